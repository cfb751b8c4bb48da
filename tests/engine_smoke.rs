use ctxlog::storage::{CrashMode, MemStorage};
use ctxlog::{create_adapter, create_manager_with_config, Config, Error, Offset, Update};
use std::sync::Arc;

fn cfg(mem: &MemStorage) -> Config {
    let mut c = Config::new("store");
    c.storage = Arc::new(mem.clone());
    c.segment_bytes = 64 * 1024;
    c.record_bytes_max = 16 * 1024;
    c.value_bytes_max = 8 * 1024;
    c.snapshot_every_commits = Some(50);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_set_restore_reopen() {
    let mem = MemStorage::new();
    let m = create_manager_with_config(cfg(&mem)).await.unwrap();
    let r = m.create("users").await.unwrap();
    assert_eq!(r.offset, Offset(1));
    m.set("users", "alice", &42u32).await.unwrap();
    let p = m.create_recovery_point("before").await.unwrap();
    m.set("users", "alice", &7u32).await.unwrap();
    m.delete("users").await.unwrap();
    assert!(matches!(m.get("users"), Err(Error::NotFound { .. })));
    let old = m.state_at("before").await.unwrap();
    assert_eq!(old.offset(), p);
    assert_eq!(
        old.context("users")
            .unwrap()
            .get("alice")
            .unwrap()
            .decode::<u32>()
            .unwrap(),
        42
    );
    m.restore("before").await.unwrap();
    assert_eq!(m.get_as::<u32>("users", "alice").unwrap(), 42);
    let v = m.state().version("users");
    let err = m
        .update(
            Update::new()
                .set("users", "bob", &1)
                .unwrap()
                .expect("users", Offset(1)),
        )
        .await;
    assert!(matches!(err, Err(Error::VersionConflict { .. })), "{err:?}");
    m.update(
        Update::new()
            .set("users", "bob", &1)
            .unwrap()
            .expect("users", v),
    )
    .await
    .unwrap();
    for i in 0..200u32 {
        m.set("users", &format!("k{i}"), &vec![i; 20])
            .await
            .unwrap();
    }
    let adapter = create_adapter(&m).await.unwrap();
    m.create("other").await.unwrap();
    adapter.switch_to("users").await.unwrap();
    adapter.switch_to("other").await.unwrap();
    assert_eq!(adapter.current().as_deref(), Some("other"));
    let before = m.state();
    let hist = m.history("users").await.unwrap();
    assert!(hist.len() > 200);
    m.close().await.unwrap();

    let m2 = create_manager_with_config(cfg(&mem.crash_image(CrashMode::DropUnsynced)))
        .await
        .unwrap();
    assert_eq!(*m2.state(), *before);
    assert!(
        m2.open_report().snapshot.is_some(),
        "{:?}",
        m2.open_report()
    );
    let a2 = create_adapter(&m2).await.unwrap();
    assert_eq!(a2.current().as_deref(), Some("other"));
    assert_eq!(a2.active(), vec!["other".to_string()]);
}
