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

pub mod offset;
pub mod storage;
pub mod wal;

pub use offset::Offset;
