//! Going back in time: name a point in the log, keep changing things, read the store as it
//! was at that point, then restore it. A restore is itself a new commit: history is never
//! rewritten, so the state before the restore stays readable too.
//!
//! Run with `cargo run --example point_in_time`.

use ctxlog::event::Event;
use ctxlog::{create_manager, Offset};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let m = create_manager(dir.path()).await?;

    m.create("config").await?;
    m.set("config", "replicas", &3u32).await?;
    m.set("config", "region", "eu-west").await?;
    let v1 = m.create_recovery_point("v1").await?;
    println!("recovery point 'v1' at offset {v1}");

    // Changes after the point: a value changed, a key removed, a new context.
    m.set("config", "replicas", &5u32).await?;
    m.remove("config", "region").await?;
    m.create("experiments").await?;
    m.set("experiments", "flag", &true).await?;
    let before_restore = m.last_offset();
    println!(
        "now: replicas = {}, contexts {:?}",
        m.get_as::<u32>("config", "replicas")?,
        m.list()
    );

    // Read the past without changing anything: by label or by offset.
    let then = m.state_at("v1").await?;
    let replicas: u32 = then
        .context("config")
        .and_then(|c| c.get("replicas"))
        .expect("replicas existed at v1")
        .decode()?;
    println!(
        "at v1: replicas = {replicas}, contexts {:?}",
        then.contexts().map(|(n, _)| n).collect::<Vec<_>>()
    );
    assert_eq!(replicas, 3);
    assert!(then.context("experiments").is_none());
    let at_two = m.state_at(Offset(2)).await?;
    assert!(at_two.context("config").unwrap().get("region").is_none());

    // Restore: one new commit brings every context back to its state at v1. 'experiments',
    // created after v1, is deleted; 'config' gets its old values back.
    let receipt = m.restore("v1").await?;
    println!(
        "restored to v1 in commit {} (changed {:?})",
        receipt.offset,
        receipt.versions.keys().collect::<Vec<_>>()
    );
    assert_eq!(m.get_as::<u32>("config", "replicas")?, 3);
    assert_eq!(m.get_as::<String>("config", "region")?, "eu-west");
    assert_eq!(m.list(), ["config"]);

    // Nothing was lost: the state just before the restore is still there.
    let undone = m.state_at(before_restore).await?;
    assert!(undone.context("experiments").is_some());
    let restored_events: Vec<String> = m
        .events(receipt.offset)
        .await?
        .into_iter()
        .flat_map(|c| c.events)
        .map(|e| match e {
            Event::ContextRestored { context, image, .. } => format!(
                "{context}: {}",
                if image.is_some() {
                    "brought back"
                } else {
                    "deleted"
                }
            ),
            other => other.kind().to_string(),
        })
        .collect();
    println!("the restore commit: {restored_events:?}");
    assert_eq!(
        restored_events,
        ["config: brought back", "experiments: deleted"]
    );

    // A snapshot bounds the cost of later reads; the answers stay the same, after a reopen too.
    let snap = m.snapshot_now().await?;
    m.close().await?;
    let m = create_manager(dir.path()).await?;
    println!(
        "reopened from the snapshot at offset {snap}: {:?}",
        m.open_report().snapshot
    );
    assert_eq!(m.open_report().snapshot, Some(snap));
    assert_eq!(m.state_at("v1").await?.offset(), v1);
    assert_eq!(m.get_as::<u32>("config", "replicas")?, 3);
    m.close().await?;
    Ok(())
}
