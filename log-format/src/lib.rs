//! # ctxlog-format: the bytes of ctxlog
//!
//! This crate is the on-disk format of [ctxlog](../ctxlog/index.html) and nothing else: file
//! headers, record frames, checksums, snapshot files, and a reader that tells a clean end, a
//! torn tail and corruption apart. It does no I/O (everything works on byte slices), has no
//! `unsafe`, never panics on input (indexing and `unwrap` are denied by lint) and puts only
//! little-endian integers on disk. The prose specification, with a worked hex example, is
//! `log-format/FORMAT.md`; the constants live in [`layout`].
//!
//! ```
//! use ctxlog_format::{encode_frame, FrameLayout, FrameReader};
//! let mut seg = Vec::new();
//! encode_frame(&mut seg, FrameLayout::default(), 1, None, b"hello").unwrap();
//! encode_frame(&mut seg, FrameLayout::default(), 2, None, b"world").unwrap();
//! seg.extend_from_slice(&[0u8; 64]); // preallocated space
//! let payloads: Vec<_> = FrameReader::new(&seg, 0, 1, FrameLayout::default())
//!     .map(|f| f.unwrap().payload)
//!     .collect();
//! assert_eq!(payloads, [b"hello".as_slice(), b"world".as_slice()]);
//! ```

pub mod error;
mod frame;
mod header;
pub mod layout;
mod le;
mod reader;
mod snapshot;

pub use error::{CorruptionKind, EncodeError, HeaderError};
pub use frame::{chain_genesis, chain_next, encode_frame, frame_crc, Frame, FrameLayout};
pub use header::{FileHeader, FileKind};
pub use le::all_zero;
pub use reader::{FrameReader, Stop};
pub use snapshot::{decode_snapshot, encode_snapshot, DecodedSnapshot, SnapshotError};
