//! Audit proofs: everything a third party needs to check a point-in-time state offline,
//! without the store: the records up to an offset (or from a snapshot the chain vouches for),
//! and the digest at that offset.
//!
//! The checker recomputes every chain hash from the genesis value (or the snapshot's), checks
//! every offset, compares the result with the digest, and replays the commits to produce the
//! state. It proves that the records are the history that produced the digest; that the digest
//! is the right one is for the checker to establish independently (a published value, one an
//! auditor kept), which is why [`AuditProof::check_against`] takes it as an argument.
//!
//! File layout: the 8-byte magic `CTXLAUD1`, then the proof in MessagePack.

use crate::digest::{hex, Digest};
use crate::error::{Error, RecoveryError, Result};
use crate::event::Commit;
use crate::offset::Offset;
use crate::state::State;
use ctxlog_format::{chain_genesis, chain_next};
use serde::{Deserialize, Serialize};

/// Magic at the start of a proof file (its version is the last byte).
pub const PROOF_MAGIC: [u8; 8] = *b"CTXLAUD1";

/// A self-contained, checkable history up to one offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditProof {
    /// The store the history belongs to (its chain's genesis depends on it).
    pub store_id: [u8; 16],
    /// The state the records start from, when the log no longer starts at offset 1: a
    /// snapshot, whose chain hash must be the chain value before the first record.
    #[serde(with = "serde_bytes")]
    pub base: Vec<u8>,
    /// The records, in order: (offset, payload).
    pub records: Vec<(Offset, serde_bytes::ByteBuf)>,
    /// The digest at the last record's offset.
    pub digest: Digest,
}

/// What a successful check established.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The state as of the digest's offset.
    pub state: State,
    /// The digest the records produce.
    pub digest: Digest,
    /// The first offset whose record the proof carries (after the base state).
    pub first: Offset,
}

fn bad(offset: Offset, reason: impl Into<String>) -> Error {
    Error::Recovery(RecoveryError::BadCommit {
        offset,
        reason: reason.into(),
    })
}

impl AuditProof {
    /// The proof as file bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = PROOF_MAGIC.to_vec();
        // Encoding into a Vec fails only for types serde cannot express; these all can.
        let r = rmp_serde::encode::write(&mut out, self);
        debug_assert!(r.is_ok(), "proof encoding failed: {r:?}");
        out
    }

    /// Reads a proof file.
    pub fn decode(bytes: &[u8]) -> Result<AuditProof> {
        let body = bytes
            .strip_prefix(&PROOF_MAGIC)
            .ok_or_else(|| bad(Offset::ZERO, "not a ctxlog audit proof (wrong magic)"))?;
        rmp_serde::from_slice(body)
            .map_err(|e| bad(Offset::ZERO, format!("proof does not decode: {e}")))
    }

    /// Checks the proof on its own: chain, offsets, the digest it carries, and replays the
    /// state. This proves internal consistency; use [`check_against`](Self::check_against)
    /// with an independently obtained digest to prove authenticity.
    pub fn check(&self) -> Result<Checked> {
        let (mut state, mut chain, first) = if self.base.is_empty() {
            (
                State::default(),
                chain_genesis(&self.store_id),
                Offset::FIRST,
            )
        } else {
            let state: State = rmp_serde::from_slice(&self.base)
                .map_err(|e| bad(Offset::ZERO, format!("base state does not decode: {e}")))?;
            let seed = state
                .chain()
                .ok_or_else(|| bad(state.offset(), "base state carries no chain hash"))?;
            let first = state.offset().next();
            (state, seed, first)
        };
        let mut expected = first;
        for (offset, payload) in &self.records {
            if *offset != expected {
                return Err(bad(
                    *offset,
                    format!("record offset {offset} where {expected} was expected"),
                ));
            }
            chain = chain_next(&chain, offset.0, payload);
            let commit = Commit::decode(*offset, payload)?;
            state
                .apply_commit(*offset, &commit)
                .map_err(|e| crate::replay::inconsistent(*offset, e))?;
            state.set_chain(Some(chain));
            expected = expected.next();
        }
        let digest = Digest {
            offset: expected.prev(),
            hash: chain,
        };
        if digest != self.digest {
            return Err(Error::Tampered {
                offset: self.digest.offset,
                expected: hex(&self.digest.hash),
                found: hex(&digest.hash),
            });
        }
        Ok(Checked {
            state,
            digest,
            first,
        })
    }

    /// Checks the proof and that it produces `trusted`, a digest obtained independently.
    pub fn check_against(&self, trusted: &Digest) -> Result<Checked> {
        let checked = self.check()?;
        if checked.digest != *trusted {
            return Err(Error::Tampered {
                offset: trusted.offset,
                expected: hex(&trusted.hash),
                found: hex(&checked.digest.hash),
            });
        }
        Ok(checked)
    }
}
