//! Many writers, one counter: each task reads the counter and its version, writes the next
//! value only if the version is unchanged, and retries on a conflict. No increment is lost.
//! A tracker waits for the last commit and watches the counter's version.
//!
//! Run with `cargo run --example concurrent`.

use ctxlog::{create_manager, ContextTracker, Error, Update};
use std::time::Duration;

const TASKS: u64 = 16;
const INCREMENTS: u64 = 10;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let m = create_manager(dir.path()).await?;
    m.create("inventory").await?;
    m.set("inventory", "stock", &0u64).await?;

    // Watch the counter's version: the receiver changes whenever a commit changes the context.
    let tracker = ContextTracker::new(&m);
    // Changes that come faster than the watcher looks are coalesced: it sees the latest.
    let mut watch = tracker.watch("inventory")?;
    let watcher = {
        let m = m.clone();
        tokio::spawn(async move {
            let mut changes = 0u64;
            while watch.changed().await.is_ok() {
                changes += 1;
                let version = *watch.borrow_and_update();
                let done = m.get_as::<u64>("inventory", "stock").ok() == Some(TASKS * INCREMENTS);
                if done && version == m.state().version("inventory") {
                    break;
                }
            }
            changes
        })
    };

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (m, tracker) = (m.clone(), tracker.clone());
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            for _ in 0..INCREMENTS {
                loop {
                    // Read the value and the version it belongs to from one state.
                    let state = m.state();
                    let version = state.version("inventory");
                    let stock: u64 = state
                        .context("inventory")
                        .and_then(|c| c.get("stock"))
                        .expect("stock exists")
                        .decode()?;
                    let update = Update::new()
                        .set("inventory", "stock", &(stock + 1))?
                        .expect("inventory", version);
                    match m.update(update).await {
                        Ok(_) => break,
                        // Someone else got there first. Their commit may not be visible
                        // yet (it is checked before it is durable): wait for it, then read
                        // again and retry, instead of spinning on a stale state.
                        Err(Error::VersionConflict { actual, .. }) => {
                            conflicts += 1;
                            tracker.wait_for(actual).await?;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            println!("task {task:>2}: {INCREMENTS} increments, {conflicts} retries");
            Ok::<u64, Box<dyn std::error::Error + Send + Sync>>(conflicts)
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await?.map_err(|e| e.to_string())?;
    }

    let stock: u64 = m.get_as("inventory", "stock")?;
    println!(
        "stock = {stock} after {} increments and {conflicts} retries",
        TASKS * INCREMENTS
    );
    assert_eq!(stock, TASKS * INCREMENTS, "an increment was lost");

    // Every increment was one commit; the tracker resolves once the last one is visible.
    let last = m.last_offset();
    let reached = tracker.wait_for(last).await?;
    assert!(reached >= last);
    let changes = tokio::time::timeout(Duration::from_secs(10), watcher).await??;
    println!("the watch saw {changes} version changes");
    assert!(changes >= 1);
    let stats = m.stats();
    println!(
        "{} commits in {} writes ({:.1} commits per write)",
        stats.log.records, stats.log.writes, stats.avg_batch
    );
    m.close().await?;
    Ok(())
}
