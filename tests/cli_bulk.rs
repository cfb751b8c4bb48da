//! `import` and `export` through the real binary: acks, bad lines, the round trip, and a store
//! locked by another process.

mod cli_support;

use cli_support::{json_lines, Store};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

#[test]
fn import_acks_every_good_line_and_names_bad_ones() {
    let s = Store::new();
    let input = [
        r#"{"ops":[{"op":"create","context":"c","labels":{"team":"x"}}]}"#,
        r#"{"ops":[{"op":"set","context":"c","key":"k","value":1}]}"#,
        r#"this is not JSON"#,
        r#"{"ops":[{"op":"set","context":"c","key":"k2","value":[1,2]}],"expect":{"c":2}}"#,
        "",
        r#"{"ops":[{"op":"set","context":"","key":"k","value":1}]}"#,
        r#"{"ops":[{"op":"frob","context":"c"}]}"#,
        r#"{"ops":[{"op":"set","context":"c","key":"k3","value":null}],"expect":{"c":1}}"#,
        r#"{"ops":[{"op":"create","context":"d"},{"op":"meta","context":"d","labels":{"a":"b"}},{"op":"rm","context":"c","key":"k"}]}"#,
        r#"{"ops":[{"op":"set","context":"nope","key":"k","value":1}]}"#,
        r#"{"ops":[]}"#,
        r#"{"ops":[{"op":"delete","context":"d"}]}"#,
    ]
    .join("\n");
    let o = s.import(&input);
    assert_eq!(o.status.code(), Some(1));
    let acks = json_lines(&String::from_utf8(o.stdout).unwrap());
    assert_eq!(
        acks,
        [
            json!({"line": 1, "offset": 1}),
            json!({"line": 2, "offset": 2}),
            json!({"line": 4, "offset": 3}),
            json!({"line": 9, "offset": 4}),
            json!({"line": 12, "offset": 5}),
        ]
    );
    let err = String::from_utf8(o.stderr).unwrap();
    // Bad JSON is reported when read, a refused commit when the writer refuses it: sort.
    let mut lines: Vec<&str> = err.lines().collect();
    let number = |l: &str| -> u32 {
        let rest = l.split("line ").nth(1).unwrap_or_default();
        rest.split(':')
            .next()
            .unwrap_or_default()
            .parse()
            .unwrap_or(0)
    };
    lines.sort_by_key(|l| number(l));
    assert_eq!(lines.len(), 6, "{err}");
    for (line, n) in lines.iter().zip([3, 6, 7, 8, 10, 11]) {
        assert!(line.contains(&format!("line {n}:")), "{line}");
    }
    assert!(lines[0].contains("bad JSON"));
    assert!(lines[1].contains("invalid context name"));
    assert!(lines[3].contains("version conflict"));
    assert!(lines[4].contains("nope"));
    // The good lines are committed.
    assert_eq!(s.json(&["get", "c"]), json!({"k2": [1, 2]}));
    assert_eq!(s.ok(&["list"]), "c\n");
    // A clean import exits 0.
    let o = s.import(r#"{"ops":[{"op":"set","context":"c","key":"z","value":"zz"}]}"#);
    assert!(o.status.success());
}

#[test]
fn export_import_round_trip() {
    let s = Store::new();
    let mut input = String::new();
    for c in 0..20 {
        input += &format!(
            "{{\"ops\":[{{\"op\":\"create\",\"context\":\"ctx-{c}\",\"labels\":{{\"n\":\"{c}\"}}}}]}}\n"
        );
        for k in 0..15 {
            let v = json!({ "c": c, "k": k, "f": 1.5, "neg": -7, "s": "é ✓", "nested": {"a": [true, null]} });
            input += &json!({"ops": [{"op": "set", "context": format!("ctx-{c}"), "key": format!("k{k}"), "value": v}]}).to_string();
            input.push('\n');
        }
    }
    input += r#"{"ops":[{"op":"delete","context":"ctx-3"},{"op":"rm","context":"ctx-4","key":"k0"},{"op":"meta","context":"ctx-5","remove":["n"]}]}"#;
    let o = s.import(&input);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json_lines(&String::from_utf8(o.stdout).unwrap()).len(), 321);

    let exported = s.ok(&["export"]);
    assert_eq!(exported.lines().count(), 19);
    let t = Store::new();
    let o = t.import(&exported);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names = s.json(&["list"]);
    assert_eq!(
        names
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].clone())
            .collect::<Vec<_>>(),
        t.json(&["list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].clone())
            .collect::<Vec<_>>()
    );
    for n in names.as_array().unwrap() {
        let name = n["name"].as_str().unwrap();
        assert_eq!(s.json(&["get", name]), t.json(&["get", name]), "{name}");
        assert_eq!(s.json(&["meta", name]), t.json(&["meta", name]), "{name}");
    }
    // --to: the state as of an offset; --from: only contexts changed since.
    assert_eq!(s.ok(&["export", "--to", "16"]).lines().count(), 1);
    let from = s.ok(&["export", "--from", "321"]);
    assert_eq!(from.lines().count(), 2, "{from}");
}

#[test]
fn a_store_held_by_another_process_is_locked() {
    let s = Store::new();
    s.ok(&["create", "a"]);
    let mut holder = s
        .cmd(&["import"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = holder.stdin.take().unwrap();
    writeln!(
        stdin,
        r#"{{"ops":[{{"op":"set","context":"a","key":"k","value":1}}]}}"#
    )
    .unwrap();
    stdin.flush().unwrap();
    // Its ack says the store is open and the commit durable.
    let mut ack = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut ack)
        .unwrap();
    assert_eq!(ack.trim(), r#"{"line":1,"offset":2}"#);

    let e = s.fails(&["set", "a", "k", "2"], 1);
    assert!(e.contains("locked"), "{e}");
    assert!(s.fails(&["get", "a"], 1).contains("locked"));
    // The lock-free readers still work, and name the holder.
    let inspect = s.json(&["inspect"]);
    assert_eq!(inspect["lock"]["held"], true);
    assert_eq!(inspect["lock"]["pid"], holder.id());
    s.ok(&["verify"]);
    assert_eq!(s.json(&["log"]).as_array().unwrap().len(), 2);

    drop(stdin);
    assert!(holder.wait().unwrap().success());
    assert_eq!(s.json(&["get", "a", "k"]), json!(1));
    assert_eq!(s.json(&["inspect"])["lock"]["held"], false);
}
