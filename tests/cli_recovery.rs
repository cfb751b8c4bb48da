//! Recovery points, restore, snapshot, compact, stats, and the adapter commands, through the
//! real binary.

mod cli_support;

use cli_support::Store;
use serde_json::json;

#[test]
fn points_restore_and_point_in_time_reads() {
    let s = Store::new();
    s.ok(&["create", "users"]);
    s.ok(&["set", "users", "alice", "1"]);
    s.ok(&["create", "flags"]);
    let p = s.json(&["point", "create", "good"]);
    assert_eq!(p, json!({"label": "good", "offset": 4}));
    assert_eq!(s.ok(&["point", "create", "plain"]).trim(), "5");
    assert!(s.fails(&["point", "create", "good"], 1).contains("good"));
    assert!(s.fails(&["point", "create", ""], 1).contains("invalid"));
    assert_eq!(
        s.json(&["point", "list"]),
        json!([{"label": "good", "offset": 4}, {"label": "plain", "offset": 5}])
    );
    assert!(s.ok(&["point", "list"]).contains("good"));

    // The mistake.
    s.ok(&["set", "users", "alice", "999"]);
    s.ok(&["delete", "flags"]);
    s.ok(&["create", "junk"]);
    assert_eq!(s.json(&["get", "users", "alice", "--at", "good"]), json!(1));
    assert_eq!(s.ok(&["list", "--at", "good"]), "flags\nusers\n");

    let r = s.json(&["restore", "good"]);
    assert_eq!(r["target"], 4);
    assert_eq!(r["deleted"], json!(["junk"]));
    let restored: Vec<_> = r["restored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["context"].as_str().unwrap(),
                c["was_deleted"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(restored, [("flags", true), ("users", false)]);
    assert_eq!(s.json(&["get", "users", "alice"]), json!(1));
    assert_eq!(s.ok(&["list"]), "flags\nusers\n");
    // Nothing left to restore; by offset too.
    assert!(s.ok(&["restore", "4"]).contains("nothing to restore"));
    let text = s.ok(&["restore", "2"]);
    assert!(text.contains("deleted flags"), "{text}");
    assert!(s.fails(&["restore", "nolabel"], 1).contains("nolabel"));
    assert!(s.fails(&["restore", "12345"], 1).contains("12345"));
}

#[test]
fn snapshot_compact_and_stats() {
    // 64 KiB segments, so that a few hundred values fill several.
    let s = Store::with_segment_bytes("65536");
    s.ok(&["create", "big"]);
    let pad = "x".repeat(500);
    let lines: String = (0..400)
        .map(|i| format!("{{\"ops\":[{{\"op\":\"set\",\"context\":\"big\",\"key\":\"k{i:03}\",\"value\":\"{pad}\"}}]}}\n"))
        .collect();
    let o = s.import(&lines);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let segments = std::fs::read_dir(s.dir.join("wal")).unwrap().count();
    assert!(segments >= 3, "{segments} segments");

    let snap = s.json(&["snapshot"]);
    assert_eq!(snap["offset"], 401);
    assert!(std::path::Path::new(snap["file"].as_str().unwrap()).exists());
    assert!(s.ok(&["snapshot"]).contains("snapshot as of offset 401"));

    let c = s.json(&["compact", "--before", "402"]);
    let removed = c["removed"].as_array().unwrap();
    assert!(!removed.is_empty(), "{c}");
    assert!(c["first_offset"].as_u64().unwrap() > 1);
    assert!(s
        .ok(&["compact", "--before", "1"])
        .contains("nothing removed"));
    // Everything still reads: from the snapshot, and the log after it.
    assert_eq!(s.json(&["get", "big"]).as_object().unwrap().len(), 400);
    assert!(s.json(&["history", "big"]).as_array().unwrap().len() > 1);
    s.ok(&["verify"]);

    let st = s.json(&["stats"]);
    // The compaction is a commit of its own.
    assert_eq!(st["last_offset"], 402);
    assert_eq!(st["contexts"], 1);
    assert_eq!(st["open"]["snapshot"], 401);
    assert!(st["segments"].as_u64().unwrap() < segments as u64);
    assert!(s.ok(&["stats"]).contains("last offset      402"));
}

#[test]
fn adapter_use_current_activate_deactivate_default() {
    let s = Store::new();
    s.ok(&["create", "a"]);
    s.ok(&["create", "b"]);
    assert_eq!(s.json(&["current"])["current"], json!(null));
    assert!(s.ok(&["current"]).contains("no current context"));
    s.json(&["default", "b"]);
    assert_eq!(s.json(&["default"]), json!({"default": "b"}));
    let c = s.json(&["current"]);
    assert_eq!(
        (c["current"].clone(), c["from_default"].clone()),
        (json!("b"), json!(true))
    );
    s.ok(&["use", "a"]);
    let c = s.json(&["current"]);
    assert_eq!(c["current"], "a");
    assert_eq!(c["active"], json!(["a"]));
    assert_eq!(s.ok(&["current"]).lines().next(), Some("a"));
    s.json(&["activate", "b"]);
    assert_eq!(s.json(&["current"])["active"], json!(["a", "b"]));
    s.json(&["deactivate", "a"]);
    let c = s.json(&["current"]);
    assert_eq!(
        (c["current"].clone(), c["active"].clone()),
        (json!("b"), json!(["b"]))
    );
    s.ok(&["default", "--clear"]);
    assert_eq!(s.json(&["current"])["current"], json!(null));
    for cmd in ["use", "activate", "deactivate", "default"] {
        let e = s.fails(&[cmd, "nope"], 1);
        assert!(e.contains("\"nope\""), "{cmd}: {e}");
    }
    assert!(s.fails(&["use", ""], 1).contains("invalid context name"));
}
