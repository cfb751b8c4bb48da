//! The context commands through the real binary: create, set, get, rm, delete, list, meta,
//! history; their --json output; and their errors.

mod cli_support;

use cli_support::{bin, Store};
use serde_json::json;

#[test]
fn create_set_get_rm_delete_list() {
    let s = Store::new();
    let r = s.json(&["create", "users", "--label", "team=core"]);
    assert_eq!(r["offset"], 1);
    assert!(s
        .ok(&["set", "users", "alice", r#"{"plan":"pro","seats":3}"#])
        .contains("offset 2"));
    s.ok(&["set", "users", "bob", "hello world"]);
    s.ok(&["set", "users", "n", "-5"]);
    let r = s.json(&["set", "users", "t", "true"]);
    assert_eq!(r["offset"], 5);

    // Values are JSON when they parse, strings otherwise.
    let all = s.json(&["get", "users"]);
    assert_eq!(
        all,
        json!({ "alice": {"plan": "pro", "seats": 3}, "bob": "hello world", "n": -5, "t": true })
    );
    assert_eq!(
        s.json(&["get", "users", "alice"]),
        json!({"plan": "pro", "seats": 3})
    );
    assert_eq!(s.ok(&["get", "users", "n"]).trim(), "-5");
    assert!(s.ok(&["get", "users"]).contains("bob = \"hello world\""));

    let r = s.json(&["rm", "users", "bob"]);
    assert_eq!(r["offset"], 6);
    assert!(s.json(&["get", "users"]).get("bob").is_none());

    s.ok(&["create", "tmp"]);
    assert_eq!(s.ok(&["list"]), "tmp\nusers\n");
    let list = s.json(&["list"]);
    assert_eq!(list[1]["name"], "users");
    assert_eq!(list[1]["keys"], 3);
    assert_eq!(list[1]["labels"], json!({"team": "core"}));
    assert!(s.json(&["delete", "tmp"])["offset"].is_u64());
    assert_eq!(s.ok(&["list"]), "users\n");
    // Point-in-time reads.
    assert_eq!(s.json(&["list", "--at", "7"]).as_array().unwrap().len(), 2);
    assert_eq!(
        s.json(&["get", "users", "bob", "--at", "5"]),
        json!("hello world")
    );
    assert_eq!(s.json(&["get", "users", "--at", "1"]), json!({}));
}

#[test]
fn meta_and_history() {
    let s = Store::new();
    s.ok(&["create", "c"]);
    assert_eq!(s.json(&["meta", "c"]), json!({}));
    s.ok(&["meta", "c", "team=x", "env=prod"]);
    assert_eq!(s.ok(&["meta", "c"]), "env=prod\nteam=x\n");
    s.json(&["meta", "c", "--rm", "env"]);
    assert_eq!(s.json(&["meta", "c"]), json!({"team": "x"}));

    s.ok(&["set", "c", "k", "1"]);
    s.ok(&["set", "c", "k", "2"]);
    s.ok(&["rm", "c", "k"]);
    let h = s.json(&["history", "c"]);
    let h = h.as_array().unwrap();
    assert_eq!(h.len(), 6, "{h:?}");
    assert_eq!(h[0]["event"], "ContextCreated");
    assert_eq!(h[4]["event"], "ValueSet");
    assert_eq!(
        (h[4]["old"].clone(), h[4]["new"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(h[5]["event"], "ValueRemoved");
    assert_eq!(h[5]["old"], 2);
    assert!(h[5]["time"].as_str().unwrap().ends_with('Z'));
    let text = s.ok(&["history", "c"]);
    assert!(text.contains("k: 1 -> 2"), "{text}");
    assert!(text.contains("k: 2 -> (removed)"), "{text}");
}

#[test]
fn errors_name_what_was_wrong() {
    let s = Store::new();
    // No store yet: read commands refuse rather than create one.
    assert!(s.fails(&["get", "users"], 1).contains("no ctxlog store"));
    assert!(s
        .fails(&["set", "users", "k", "1"], 1)
        .contains("no ctxlog store"));
    assert!(!s.dir.exists(), "a failed command created the store");
    s.ok(&["create", "users"]);
    let e = s.fails(&["get", "nope"], 1);
    assert!(e.contains("\"nope\"") && e.contains("not found"), "{e}");
    assert!(s.fails(&["set", "nope", "k", "1"], 1).contains("nope"));
    assert!(s.fails(&["rm", "nope", "k"], 1).contains("nope"));
    assert!(s.fails(&["delete", "nope"], 1).contains("nope"));
    assert!(s.fails(&["meta", "nope"], 1).contains("nope"));
    assert!(s.fails(&["meta", "nope", "a=b"], 1).contains("nope"));
    assert!(s.fails(&["history", "nope"], 1).contains("nope"));
    assert!(s.fails(&["get", "users", "k"], 1).contains("\"k\""));
    assert!(s.fails(&["rm", "users", "k"], 1).contains("\"k\""));
    assert!(s.fails(&["create", "users"], 1).contains("already exists"));
    // Invalid names: empty, control characters, too long.
    assert!(s.fails(&["create", ""], 1).contains("invalid context name"));
    assert!(s
        .fails(&["create", "a\tb"], 1)
        .contains("invalid context name"));
    assert!(s
        .fails(&["set", "users", "", "1"], 1)
        .contains("invalid key"));
    let long = "x".repeat(300);
    assert!(s.fails(&["create", &long], 1).contains("too long"));
    assert!(s.fails(&["get", "users", "--at", "999"], 1).contains("999"));
    assert!(s
        .fails(&["get", "users", "--at", "nolabel"], 1)
        .contains("nolabel"));
}

#[test]
fn usage_errors_exit_2() {
    let s = Store::new();
    for args in [
        &["frobnicate"][..],
        &["set", "only-name"],
        &["get"],
        &["meta", "c", "novalue"],
        &["compact"],
        &["compact", "--before", "x"],
        &["--durability", "sometimes", "list"],
        &["point"],
        &["default", "c", "--clear"],
    ] {
        let o = s.run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
    assert_eq!(bin().output().unwrap().status.code(), Some(2));
    assert!(bin().arg("--help").output().unwrap().status.success());
}

#[test]
fn durability_modes_and_env_dir() {
    let s = Store::new();
    s.ok(&["create", "x"]);
    for (d, reached) in [
        ("always", "Synced"),
        ("batched", "Written"),
        ("never", "Written"),
    ] {
        let r = s.json(&["--durability", d, "set", "x", d, "1"]);
        assert_eq!(r["durability"], reached, "{d}: {r}");
    }
    // $CTXLOG_DIR stands for --dir.
    let o = bin()
        .env("CTXLOG_DIR", &s.dir)
        .args(["--json", "get", "x"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v, json!({"always": 1, "batched": 1, "never": 1}));
}
