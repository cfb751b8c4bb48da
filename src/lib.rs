//! # ctxlog: an embedded, event-sourced storage engine
//!
//! Applications keep *contexts*: named key-value state objects with labels. Every change is a
//! *commit*: one checksummed record in a write-ahead log holding one or more events. State is
//! never written in place; it is rebuilt by replaying the log from the nearest snapshot. A
//! commit's *offset* is the only clock: a context's version is the offset of the commit that
//! last changed it (optimistic concurrency for free), and any past state can be read
//! ([`ContextManager::state_at`]) or restored ([`ContextManager::restore`]) by its offset.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> ctxlog::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! use ctxlog::{create_manager, Update, Error};
//! let store = create_manager(dir.path()).await?;
//! store.create("cart").await?;
//! let v = store.set("cart", "items", &3).await?.offset;            // version = offset
//! let point = store.create_recovery_point("checkout").await?;
//! let stale = Update::new().set("cart", "items", &0)?.expect("cart", ctxlog::Offset(1));
//! assert!(matches!(store.update(stale).await, Err(Error::VersionConflict { .. })));
//! store.update(Update::new().set("cart", "items", &4)?.expect("cart", v)).await?;
//! assert_eq!(store.state_at(point).await?.context("cart").unwrap().get("items").unwrap().decode::<u32>().unwrap(), 3);
//! store.close().await
//! # }
//! ```
//!
//! ## Layers (`docs/ARCHITECTURE.md`)
//! - `ctxlog-format` (`log-format/`): the on-disk bytes, spec in `log-format/FORMAT.md`;
//! - [`storage`]: the seam to the disk, real ([`storage::FsStorage`]) or simulated
//!   ([`storage::MemStorage`], which can lose power and inject I/O errors);
//! - [`wal`]: segments, group commit, recovery modes, reading;
//! - [`event`], [`state`], [`replay`], [`snapshot`]: the event schema, the state machine, the one
//!   replay loop, snapshots;
//! - [`manager`], [`adapter`], [`tracker`]: the async API; [`audit`], [`digest`]: tamper
//!   evidence; [`schema`], [`upcast`], [`telemetry`]: the event system's extras.
//!
//! ## Guarantees
//! - In [`Durability::Always`] (the default) a commit is acknowledged only once it is written
//!   and `fdatasync`ed: no crash at any instant loses it. A commit is all or nothing, on disk and
//!   in memory, whichever futures are dropped when.
//! - Every byte read back is checked (CRC32, offsets, and in tamper-evident stores the BLAKE3
//!   chain); a failed check is a typed error that names the file, the byte position and the
//!   offset. Only a torn tail left by a crash is cut, and it is reported.
//! - One process at a time: open takes `DIR/LOCK`; a second opener gets [`Error::Locked`] and
//!   changes nothing. After a failed write or sync the store refuses writes until reopened.
//! - History is never rewritten: restore and compaction are commits too.

pub mod adapter;
pub mod audit;
mod blob;
pub mod config;
pub mod digest;
pub mod error;
pub mod event;
#[doc(hidden)]
pub mod heap;
pub mod manager;
pub mod model;
pub mod offset;
pub mod replay;
pub mod schema;
pub mod snapshot;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod tracker;
pub mod upcast;
pub mod wal;

pub use adapter::{create_adapter, create_adapter_with_config, AdapterConfig, ContextAdapter};
pub use config::Config;
pub use digest::Digest;
pub use error::{Error, Result};
pub use manager::{
    create_manager, create_manager_with_config, At, ContextManager, Op, Receipt, Update,
};
pub use offset::Offset;
pub use tracker::{ContextTracker, ContextTrackerFactory};
pub use wal::{Durability, RecoveryMode};

/// The README's code blocks, compiled as doctests so that the embedding example stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
