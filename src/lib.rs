//! # ctxlog: an embedded, event-sourced storage engine
//!
//! Every change is a checksummed record in a write-ahead log; state is rebuilt by replaying
//! the log; recovery points are log offsets.
//!
//! This crate is built in layers (see `docs/ARCHITECTURE.md`):
//! - [`storage`]: the seam to the disk, real ([`storage::FsStorage`]) or simulated
//!   ([`storage::MemStorage`], which can lose power and inject I/O errors);
//! - [`wal`]: segments, group commit, recovery, reading;
//! - the on-disk bytes themselves live in the `ctxlog-format` crate (`log-format/FORMAT.md`).
//!
//! ## Guarantees
//! - In [`wal::Durability::Always`] (the default) an acknowledged append is on stable storage:
//!   no crash at any instant loses it.
//! - Every byte read back is checked (CRC32 and offset); a failed check is a typed error that
//!   names the file, the byte position and the offset.
//! - One process at a time: open takes `DIR/LOCK`; a second opener gets
//!   [`wal::WalError::Locked`] and changes nothing.

pub mod adapter;
pub mod audit;
pub mod config;
pub mod digest;
pub mod error;
pub mod event;
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
