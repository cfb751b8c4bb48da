//! The lock-free readers through the real binary: `log` (and `--follow` beside a writer),
//! `inspect`, and `verify` on clean and damaged stores.

mod cli_support;

use cli_support::{flip_byte, json_lines, Store};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

/// File positions of the frames of a segment (64-byte header, then `len u32 | crc | offset`).
fn frame_positions(seg: &Path) -> Vec<u64> {
    let b = std::fs::read(seg).unwrap();
    let mut pos = 64usize;
    let mut out = Vec::new();
    while pos + 16 <= b.len() {
        let len = u32::from_le_bytes(b[pos..pos + 4].try_into().unwrap()) as usize;
        let offset = u64::from_le_bytes(b[pos + 8..pos + 16].try_into().unwrap());
        if offset == 0 {
            break;
        }
        out.push(pos as u64);
        pos += 16 + len;
    }
    out
}

fn store_with_commits(n: u32) -> Store {
    let s = Store::new();
    s.ok(&["create", "c"]);
    s.ok(&["create", "d"]);
    for i in 0..n {
        s.ok(&["set", "c", &format!("k{i}"), &i.to_string()]);
    }
    s.ok(&["set", "d", "x", r#"{"a":1}"#]);
    s
}

#[test]
fn log_from_and_context() {
    let s = store_with_commits(3);
    let text = s.ok(&["log"]);
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(text.contains("set c/k1 = 1"), "{text}");
    let all = s.json(&["log"]);
    let offsets: Vec<u64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [1, 2, 3, 4, 5, 6]);
    assert_eq!(
        all[5]["events"][0],
        json!({"event": "ValueSet", "context": "d", "key": "x", "value": {"a": 1}})
    );
    assert_eq!(s.json(&["log", "--from", "5"]).as_array().unwrap().len(), 2);
    let d = s.json(&["log", "--context", "d"]);
    assert_eq!(
        d.as_array()
            .unwrap()
            .iter()
            .map(|c| c["offset"].clone())
            .collect::<Vec<_>>(),
        [json!(2), json!(6)]
    );
    assert_eq!(s.json(&["log", "--from", "99"]), json!([]));
    let empty = Store::new();
    assert!(empty.fails(&["log"], 1).contains("no ctxlog store"));
}

#[test]
fn follow_prints_commits_of_another_process_as_they_land() {
    let s = store_with_commits(0);
    let mut writer = s
        .cmd(&["import"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut follow = s
        .cmd(&["--json", "log", "--follow", "--context", "c"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("log --follow printed nothing")
    };
    let first: serde_json::Value = serde_json::from_str(&next()).unwrap();
    assert_eq!(first["offset"], 1);
    let mut stdin = writer.stdin.take().unwrap();
    let mut acks = BufReader::new(writer.stdout.take().unwrap());
    for i in 0..5 {
        writeln!(stdin, r#"{{"ops":[{{"op":"set","context":"c","key":"k{i}","value":{i}}},{{"op":"set","context":"d","key":"k","value":{i}}}]}}"#).unwrap();
        stdin.flush().unwrap();
        let mut ack = String::new();
        acks.read_line(&mut ack).unwrap();
        // The writer holds the lock the whole time; follow reads the files without it.
        let line: serde_json::Value = serde_json::from_str(&next()).unwrap();
        assert_eq!(line["offset"], 4 + i);
        assert_eq!(
            line["events"].as_array().unwrap().len(),
            1,
            "filtered to context c: {line}"
        );
        assert_eq!(line["events"][0]["value"], i);
    }
    drop(stdin);
    assert!(writer.wait().unwrap().success());
    follow.kill().unwrap();
    follow.wait().unwrap();
}

#[test]
fn inspect_lists_segments_snapshots_points() {
    let s = store_with_commits(4);
    s.ok(&["point", "create", "p"]);
    s.ok(&["snapshot"]);
    let i = s.json(&["inspect"]);
    assert_eq!(i["lock"]["held"], false);
    assert_eq!(i["segments"][0]["first_offset"], 1);
    assert_eq!(i["segments"][0]["last_offset"], 8);
    assert_eq!(i["segments"][0]["records"], 8);
    assert_eq!(i["segments"][0]["state"], "active");
    assert_eq!(i["snapshots"][0]["offset"], 8);
    assert_eq!(i["recovery_points"], json!([{"label": "p", "offset": 8}]));
    assert_eq!(i["contexts"], 2);
    assert_eq!(i["store_id"].as_str().unwrap().len(), 32);
    let text = s.ok(&["inspect"]);
    assert!(text.contains("offsets 1..=8"), "{text}");
    assert!(text.contains("lock       free"), "{text}");
}

#[test]
fn verify_finds_a_flipped_byte_with_file_and_position() {
    let s = store_with_commits(6);
    let ok = s.json(&["verify"]);
    assert_eq!(
        (ok["ok"].clone(), ok["records"].clone()),
        (json!(true), json!(9))
    );
    assert!(s.ok(&["verify"]).contains(": ok"));

    let seg = s.first_segment();
    let frames = frame_positions(&seg);
    assert_eq!(frames.len(), 9);
    // Inside the payload of the fourth record: damage, with records after it.
    flip_byte(&seg, frames[3] + 20);
    let o = s.run(&["verify"]);
    assert_eq!(o.status.code(), Some(3));
    let out = String::from_utf8(o.stdout).unwrap();
    let want = format!("{} at byte {} (offset 4)", seg.display(), frames[3]);
    assert!(out.contains(&want), "{out}");
    assert_eq!(String::from_utf8(o.stderr).unwrap().lines().count(), 1);
    let o = s.cmd(&["--json", "verify"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let p = &report["problems"][0];
    assert_eq!(
        (
            p["file"].as_str().unwrap(),
            p["position"].as_u64().unwrap(),
            p["offset"].as_u64().unwrap()
        ),
        (seg.to_str().unwrap(), frames[3], 4)
    );
    assert_eq!(p["kind"], "corrupt_record");
    // Opening the store finds the same damage: exit 3, one line naming the file.
    let e = s.fails(&["get", "c"], 3);
    assert!(e.contains(seg.to_str().unwrap()), "{e}");
    assert!(s
        .fails(&["log"], 3)
        .contains(&format!("byte {}", frames[3])));
    // inspect still reports.
    assert!(s.ok(&["inspect"]).contains("damaged at byte"));
}

#[test]
fn verify_reports_a_torn_tail_that_open_then_repairs() {
    let s = store_with_commits(2);
    let seg = s.first_segment();
    let frames = frame_positions(&seg);
    let end = {
        let b = std::fs::read(&seg).unwrap();
        let last = *frames.last().unwrap() as usize;
        last + 16 + u32::from_le_bytes(b[last..last + 4].try_into().unwrap()) as usize
    };
    // A record cut short by a crash: a frame header and part of its payload, then zeros.
    let mut b = std::fs::read(&seg).unwrap();
    b[end..end + 4].copy_from_slice(&100u32.to_le_bytes());
    b[end + 4..end + 8].copy_from_slice(&0xdead_beefu32.to_le_bytes());
    b[end + 8..end + 16].copy_from_slice(&(frames.len() as u64 + 1).to_le_bytes());
    b[end + 16..end + 40].fill(7);
    std::fs::write(&seg, b).unwrap();
    let o = s.cmd(&["--json", "verify"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["problems"][0]["kind"], "torn_tail");
    assert_eq!(report["problems"][0]["position"], end as u64);
    // Open drops the torn record; afterwards the log is clean.
    assert_eq!(s.json(&["get", "c"]), json!({"k0": 0, "k1": 1}));
    assert!(s.json(&["stats"])["open"]["log"]["torn_tail"].is_null());
    s.ok(&["verify"]);
}

#[test]
fn verify_checks_snapshots() {
    let s = store_with_commits(3);
    let snap = s.json(&["snapshot"]);
    let file = snap["file"].as_str().unwrap().to_string();
    s.ok(&["verify"]);
    let len = std::fs::metadata(&file).unwrap().len();
    flip_byte(Path::new(&file), len / 2);
    let o = s.cmd(&["--json", "verify"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let p = &report["problems"][0];
    assert_eq!(
        (p["file"].as_str().unwrap(), p["kind"].as_str().unwrap()),
        (file.as_str(), "bad_snapshot")
    );
    // The store opens all the same: the log still has everything.
    assert_eq!(json_lines(&s.ok(&["--json", "get", "c", "k2"])), [json!(2)]);
}
