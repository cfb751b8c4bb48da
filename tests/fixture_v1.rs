//! The store in tests/fixtures/v1-store was written by ctxlog 0.1 (log format 1, event schema
//! 1). Every later version must open it and find exactly this state: the test is kept forever.
//! Regenerate only if the fixture is lost: `CTXLOG_WRITE_FIXTURE=1 cargo test --test fixture_v1`.

use ctxlog::{create_adapter, create_manager_with_config, Config, Offset, Update};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-store")
}

fn config(dir: &Path) -> Config {
    let mut c = Config::new(dir);
    c.segment_bytes = 64 * 1024;
    c.record_bytes_max = 16 * 1024;
    c
}

async fn write_fixture(dir: &Path) {
    let m = create_manager_with_config(config(dir)).await.unwrap();
    let labels = BTreeMap::from([("team".to_string(), "core".to_string())]);
    m.create_with_labels("users", labels).await.unwrap();
    m.create("billing").await.unwrap();
    m.set("users", "alice", &serde_json_like()).await.unwrap();
    m.set("users", "bob", &7u32).await.unwrap();
    m.set("billing", "plan", "pro").await.unwrap();
    m.create_recovery_point("v1-before-cleanup").await.unwrap();
    m.remove("users", "bob").await.unwrap();
    m.delete("billing").await.unwrap();
    m.update(
        Update::new()
            .create("flags")
            .set("flags", "dark-mode", &true)
            .unwrap(),
    )
    .await
    .unwrap();
    m.snapshot_now().await.unwrap();
    for i in 0..300u32 {
        m.set("flags", &format!("f{i}"), &i).await.unwrap();
    }
    let a = create_adapter(&m).await.unwrap();
    a.set_default(Some("users")).await.unwrap();
    a.switch_to("flags").await.unwrap();
    m.restore("v1-before-cleanup").await.unwrap();
    m.close().await.unwrap();
}

fn serde_json_like() -> BTreeMap<String, u32> {
    BTreeMap::from([("age".to_string(), 30), ("visits".to_string(), 12)])
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_1_store_stays_readable() {
    if std::env::var_os("CTXLOG_WRITE_FIXTURE").is_some() {
        let _ = std::fs::remove_dir_all(fixture());
        write_fixture(&fixture()).await;
        let _ = std::fs::remove_file(fixture().join("LOCK"));
    }
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture(), tmp.path());
    let m = create_manager_with_config(config(tmp.path()))
        .await
        .unwrap();
    let report = m.open_report();
    assert!(report.log.torn_tail.is_none(), "{report:?}");
    assert!(report.skipped_snapshots.is_empty(), "{report:?}");
    assert_eq!(
        report.snapshot,
        Some(Offset(9)),
        "started from the snapshot"
    );
    let state = m.state();
    assert_eq!(state.offset(), Offset(312));
    // The restore brought back the state of the recovery point (offset 6) ...
    assert_eq!(
        m.recovery_points(),
        BTreeMap::from([("v1-before-cleanup".to_string(), Offset(6))])
    );
    assert_eq!(m.list(), vec!["billing".to_string(), "users".to_string()]);
    assert_eq!(
        m.get_as::<BTreeMap<String, u32>>("users", "alice").unwrap(),
        serde_json_like()
    );
    assert_eq!(m.get_as::<u32>("users", "bob").unwrap(), 7);
    assert_eq!(m.get_as::<String>("billing", "plan").unwrap(), "pro");
    assert_eq!(
        m.get("users")
            .unwrap()
            .labels()
            .get("team")
            .map(String::as_str),
        Some("core")
    );
    // ... and deleted the context created after it, whose history stays.
    assert!(m.get("flags").is_err());
    let history = m.history("flags").await.unwrap();
    assert_eq!(
        history.first().map(|h| h.event.kind()),
        Some("ContextCreated")
    );
    assert_eq!(
        history.last().map(|h| h.event.kind()),
        Some("ContextRestored")
    );
    // Adapter state: the default stays; the current context was deleted by the restore.
    assert_eq!(state.default_context(), Some("users"));
    assert_eq!(state.current(), None);
    // A point-in-time read from before the snapshot replays from the log start.
    let at5 = m.state_at(Offset(5)).await.unwrap();
    assert_eq!(
        at5.context("billing")
            .unwrap()
            .get("plan")
            .unwrap()
            .decode::<String>()
            .unwrap(),
        "pro"
    );
    assert!(at5.context("flags").is_none());
    // The store takes new commits after the fixture's.
    assert_eq!(
        m.set("users", "carol", &1u8).await.unwrap().offset,
        Offset(313)
    );
    m.close().await.unwrap();
}
