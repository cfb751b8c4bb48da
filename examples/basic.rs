//! The basics: open a store, create a context, set and read typed values, commit an atomic
//! batch guarded by an expected version, read a context's history, reopen.
//!
//! Run with `cargo run --example basic`. The store lives in a temporary directory that is
//! removed at the end.

use ctxlog::{create_manager, Error, Update};
use serde::{Deserialize, Serialize};

/// Any serde type can be a value; it is stored as MessagePack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    name: String,
    age: u32,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    println!("store in {}", dir.path().display());

    // Open (or create) the store. Every commit below is durable once its future resolves.
    let m = create_manager(dir.path()).await?;

    // A context is a named map of keys to values. Its version is the offset of the last
    // commit that changed it.
    let created = m.create("users").await?;
    println!("created context 'users' at offset {}", created.offset);

    let alice = Profile {
        name: "Alice".into(),
        age: 34,
    };
    m.set("users", "alice", &alice).await?;
    let read: Profile = m.get_as("users", "alice")?;
    assert_eq!(read, alice);
    println!("users/alice = {read:?}");

    // An atomic batch: both keys or neither, and only if nobody changed 'users' since we read
    // its version (optimistic concurrency).
    let version = m.state().version("users");
    let bob = Profile {
        name: "Bob".into(),
        age: 27,
    };
    let receipt = m
        .update(
            Update::new()
                .set("users", "bob", &bob)?
                .set("users", "count", &2u32)?
                .expect("users", version),
        )
        .await?;
    println!(
        "batch committed at offset {} (users is now at version {})",
        receipt.offset, receipt.versions["users"]
    );

    // The same expected version again is stale now: the commit is refused, nothing is written.
    let stale = m
        .update(
            Update::new()
                .remove("users", "bob")
                .expect("users", version),
        )
        .await;
    match stale {
        Err(Error::VersionConflict {
            expected, actual, ..
        }) => println!("stale update refused: expected version {expected}, actual {actual}"),
        other => panic!("expected a version conflict, got {other:?}"),
    }
    assert_eq!(m.get_as::<Profile>("users", "bob")?, bob);

    // Every change is an event in the log.
    let history = m.history("users").await?;
    println!("history of 'users':");
    for entry in &history {
        println!("  offset {:>2}: {}", entry.offset, entry.event.kind());
    }
    let kinds: Vec<&str> = history.iter().map(|h| h.event.kind()).collect();
    assert_eq!(
        kinds,
        ["ContextCreated", "ValueSet", "ValueSet", "ValueSet"]
    );

    // Close and reopen: the state is rebuilt from the log.
    let before = m.state();
    m.close().await?;
    let m = create_manager(dir.path()).await?;
    assert_eq!(*m.state(), *before);
    assert_eq!(m.get_as::<Profile>("users", "alice")?, alice);
    println!(
        "reopened: contexts {:?}, last offset {}",
        m.list(),
        m.last_offset()
    );
    m.close().await?;
    Ok(())
}
