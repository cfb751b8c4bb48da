//! Every on-disk constant of ctxlog, in one place.
//!
//! The prose description of these bytes is `log-format/FORMAT.md`; this module is its mirror in
//! code. Field positions are derived from the previous field so that no position is a bare
//! number, and the relations between them are asserted at compile time. All integers on disk are
//! little-endian; no `usize` ever reaches the disk (positions here are in-memory indexes).

/// The 8 bytes every ctxlog file starts with. The leading 0x89 (not ASCII) and the trailing
/// `\n` catch files mangled by text-mode transfers, as in PNG.
pub const MAGIC: [u8; 8] = *b"\x89CTXLOG\n";

/// The format version this crate writes, and the only one it reads.
pub const FORMAT_VERSION: u16 = 1;

// ---- file header (64 bytes, at the start of every segment and snapshot) ----

/// Position of the magic.
pub const HDR_MAGIC_POS: usize = 0;
/// Position of the format version (u16).
pub const HDR_VERSION_POS: usize = HDR_MAGIC_POS + MAGIC.len();
/// Position of the file kind (u8, see [`crate::FileKind`]).
pub const HDR_KIND_POS: usize = HDR_VERSION_POS + 2;
/// Position of a reserved byte, zero in version 1.
pub const HDR_RESERVED_A_POS: usize = HDR_KIND_POS + 1;
/// Position of the feature flags (u32).
pub const HDR_FLAGS_POS: usize = HDR_RESERVED_A_POS + 1;
/// Position of the first offset (u64): a segment's first record, a snapshot's as-of offset.
pub const HDR_FIRST_OFFSET_POS: usize = HDR_FLAGS_POS + 4;
/// Position of the creation time (u64, milliseconds since the Unix epoch).
pub const HDR_CREATED_MS_POS: usize = HDR_FIRST_OFFSET_POS + 8;
/// Position of the store id (16 bytes), the same in every file of one store.
pub const HDR_STORE_ID_POS: usize = HDR_CREATED_MS_POS + 8;
/// Length of the store id.
pub const STORE_ID_LEN: usize = 16;
/// Position of the reserved bytes, zero in version 1.
pub const HDR_RESERVED_B_POS: usize = HDR_STORE_ID_POS + STORE_ID_LEN;
/// Position of the header CRC (u32), over every header byte before it.
pub const HDR_CRC_POS: usize = HDR_RESERVED_B_POS + 12;
/// Length of the file header.
pub const HEADER_LEN: usize = HDR_CRC_POS + 4;

const _: () = assert!(HEADER_LEN == 64);
const _: () = assert!(HEADER_LEN.is_multiple_of(8), "records start 8-byte aligned");

// ---- header flags ----

/// Records carry a 32-byte chain hash between the frame header and the payload
/// (reserved in version 1 for tamper-evident history; see FORMAT.md).
pub const FLAG_CHAIN_HASH: u32 = 1 << 0;
/// Every flag this crate knows the meaning of.
pub const KNOWN_FLAGS: u32 = FLAG_CHAIN_HASH;

// ---- record frame ----

/// Position of the payload length (u32) in a frame.
pub const FRAME_LEN_POS: usize = 0;
/// Position of the frame CRC (u32) in a frame.
pub const FRAME_CRC_POS: usize = FRAME_LEN_POS + 4;
/// Position of the record offset (u64) in a frame.
pub const FRAME_OFFSET_POS: usize = FRAME_CRC_POS + 4;
/// Length of the fixed frame header.
pub const FRAME_HEADER_LEN: usize = FRAME_OFFSET_POS + 8;
/// Length of the optional chain hash that follows the frame header when
/// [`FLAG_CHAIN_HASH`] is set.
pub const CHAIN_HASH_LEN: usize = 32;

const _: () = assert!(FRAME_HEADER_LEN == 16);

/// In a file whose header has [`FLAG_CHAIN_HASH`], a chain value of this length follows the
/// header: for a segment, the chain hash before its first record (its *seed*); for a snapshot,
/// the chain hash of the record at its offset. Records or chunks start after it.
pub const CHAIN_SEED_LEN: usize = CHAIN_HASH_LEN;

/// BLAKE3 key-derivation context for a store's chain genesis (see [`crate::chain_genesis`]).
pub const CHAIN_GENESIS_CONTEXT: &str = "ctxlog 2026-11-27 chain genesis v1";

/// Where the first record (or snapshot chunk) of a file starts.
pub const fn body_start(chain_hash: bool) -> usize {
    if chain_hash {
        HEADER_LEN + CHAIN_SEED_LEN
    } else {
        HEADER_LEN
    }
}

/// The largest payload a record may carry (256 MiB). Writers may impose a smaller limit; no
/// reader accepts a larger one, so a corrupted length can never make a reader allocate or map
/// past this bound.
pub const RECORD_PAYLOAD_MAX: u32 = 256 * 1024 * 1024;

/// The first offset of a store. Offset 0 means "nothing" (a context that never existed).
pub const FIRST_OFFSET: u64 = 1;

// ---- snapshot trailer ----

/// Magic of the snapshot trailer.
pub const TRAILER_MAGIC: [u8; 8] = *b"CTXLSEND";
/// Position of the trailer magic within the trailer.
pub const TRL_MAGIC_POS: usize = 0;
/// Position of the chunk count (u64) within the trailer.
pub const TRL_CHUNKS_POS: usize = TRL_MAGIC_POS + TRAILER_MAGIC.len();
/// Position of the body length (u64): bytes of chunk frames between header and trailer.
pub const TRL_BODY_LEN_POS: usize = TRL_CHUNKS_POS + 8;
/// Position of the trailer CRC (u32), over the trailer bytes before it.
pub const TRL_CRC_POS: usize = TRL_BODY_LEN_POS + 8;
/// Position of the reserved u32, zero in version 1.
pub const TRL_RESERVED_POS: usize = TRL_CRC_POS + 4;
/// Length of the snapshot trailer.
pub const TRAILER_LEN: usize = TRL_RESERVED_POS + 4;

const _: () = assert!(TRAILER_LEN == 32);

/// Snapshot bodies are cut into chunks of at most this many bytes (4 MiB), each framed and
/// checked like a record, so that a reader can check and decode a large snapshot piece by piece.
pub const SNAPSHOT_CHUNK_MAX: usize = 4 * 1024 * 1024;

const _: () = assert!(SNAPSHOT_CHUNK_MAX as u64 <= RECORD_PAYLOAD_MAX as u64);
