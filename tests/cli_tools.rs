//! `demo` and `bench` through the real binary (bench with tiny settings).

mod cli_support;

use cli_support::{bin, Store};

#[test]
fn demo_tells_the_story_and_keeps_every_acknowledged_commit() {
    let o = bin().arg("demo").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    for want in [
        "version conflicts were detected and retried",
        "no update lost",
        "\"before-migration\" = offset",
        "point-in-time read",
        "feature-flags: restored (it had been deleted)",
        "state identical to before the close: yes",
        "every acknowledged commit is there with its value: yes",
        "fdatasyncs",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn demo_json_and_demo_in_a_given_dir() {
    let s = Store::new();
    let r = s.json(&["demo"]);
    assert_eq!(r["crash"]["all_acknowledged_present"], true);
    assert_eq!(r["reopen_identical"], true);
    assert_eq!(r["invoices_issued"], 200);
    // The store stays for inspection, and a second demo refuses to reuse it.
    assert!(s.ok(&["list"]).contains("billing"));
    assert!(s.fails(&["demo"], 1).contains("holds a store already"));
}

#[test]
fn bench_prints_every_figure_against_the_fsync_rate() {
    let cwd = tempfile::tempdir().unwrap();
    let run = |json: bool| {
        let mut c = bin();
        c.current_dir(cwd.path());
        if json {
            c.arg("--json");
        }
        c.args(["bench", "--seconds", "0.05", "--bulk", "500"]);
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let text = run(false);
    for want in [
        "raw fdatasync",
        "1 writer",
        "16 writers",
        "bulk",
        "MB/s",
        "reopen",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let r: serde_json::Value = serde_json::from_str(&run(true)).unwrap();
    assert!(r["raw_fsync_per_s"].as_f64().unwrap() > 0.0);
    assert!(r["durable_16_writers"]["vs_fsync"].as_f64().unwrap() > 0.0);
    assert_eq!(r["reopen"]["replayed"], 501);
    // The benchmark's directory was under the current directory, and is gone.
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);
}
