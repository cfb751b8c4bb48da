//! Every command's `--json` output is JSON: one document, or JSON Lines for the streams
//! (`import` acks, `export`, `log --follow`).

mod cli_support;

use cli_support::{json_lines, Store};

#[test]
fn every_command_prints_json() {
    let s = Store::new();
    let commands: &[&[&str]] = &[
        &["create", "a", "--label", "k=v"],
        &["create", "b"],
        &["set", "a", "x", "1"],
        &["set", "a", "y", "text"],
        &["get", "a"],
        &["get", "a", "x"],
        &["get", "a", "--at", "3"],
        &["rm", "a", "y"],
        &["list"],
        &["list", "--at", "2"],
        &["meta", "a"],
        &["meta", "a", "team=x"],
        &["meta", "a", "--rm", "team"],
        &["history", "a"],
        &["point", "create", "p"],
        &["point", "list"],
        &["use", "a"],
        &["activate", "b"],
        &["deactivate", "b"],
        &["default", "b"],
        &["default"],
        &["current"],
        &["delete", "b"],
        &["restore", "p"],
        &["restore", "p"],
        &["snapshot"],
        &["compact", "--before", "2"],
        &["stats"],
        &["log"],
        &["log", "--from", "3", "--context", "a"],
        &["inspect"],
        &["verify"],
    ];
    for args in commands {
        let v = s.json(args);
        assert!(
            v.is_object() || v.is_array() || !v.is_null(),
            "{args:?}: {v}"
        );
    }
    let exported = s.ok(&["--json", "export"]);
    assert_eq!(json_lines(&exported).len(), 2);
    let t = Store::new();
    let o = t.import(&exported);
    assert!(o.status.success());
    assert_eq!(json_lines(&String::from_utf8(o.stdout).unwrap()).len(), 2);
}
