//! Tamper evidence on the manager: digests, verification against a digest, verified
//! point-in-time reads.

use super::{blocking, ContextManager};
use crate::digest::{hex, Digest};
use crate::error::{Error, Result};
use crate::offset::Offset;
use crate::state::State;

impl ContextManager {
    fn require_chain(&self) -> Result<()> {
        if self.inner.reader.tamper_evident() {
            Ok(())
        } else {
            Err(Error::NotTamperEvident {
                dir: self.inner.config.dir.clone(),
            })
        }
    }

    /// The digest of the history so far: the last acknowledged offset and its chain hash.
    /// Publish it, or keep it elsewhere; [`verify_against`](Self::verify_against) later proves
    /// the local history up to that offset is the one that produced it.
    pub fn digest(&self) -> Result<Digest> {
        self.require_chain()?;
        let state = self.state();
        match state.chain() {
            Some(hash) => Ok(Digest {
                offset: state.offset(),
                hash,
            }),
            // An empty store: the chain's genesis value.
            None => self.digest_at(state.offset()),
        }
    }

    /// The digest at an earlier offset, read from the log (every chain hash from the start of
    /// that offset's segment is checked on the way).
    pub fn digest_at(&self, offset: Offset) -> Result<Digest> {
        self.require_chain()?;
        let last = self.last_offset();
        if offset > last {
            let first = self.inner.reader.first_offset();
            return Err(Error::OffsetOutOfRange {
                requested: offset,
                first,
                last,
            });
        }
        let hash = self
            .inner
            .reader
            .chain_at(offset)?
            .ok_or(Error::OffsetOutOfRange {
                requested: offset,
                first: self.inner.reader.first_offset(),
                last,
            })?;
        Ok(Digest { offset, hash })
    }

    /// Proves that the local history up to `digest.offset` is the one that produced the
    /// digest: reads every record from the start of the log (checking CRCs, offsets and every
    /// chain hash, from the genesis value when the log is whole) and compares the chain hash at
    /// the digest's offset. Any rewrite (a changed payload with its CRC recomputed, a dropped
    /// and renumbered record, swapped segments) gives [`Error::Tampered`] or a corruption error.
    pub async fn verify_against(&self, digest: Digest) -> Result<()> {
        self.require_chain()?;
        let reader = self.inner.reader.clone();
        let last = self.last_offset();
        if digest.offset > last {
            let first = reader.first_offset();
            return Err(Error::OffsetOutOfRange {
                requested: digest.offset,
                first,
                last,
            });
        }
        blocking(move || {
            let first = reader.first_offset();
            let mut found = if digest.offset < first {
                reader.chain_at(digest.offset)?
            } else {
                None
            };
            reader.scan(first, digest.offset, |r| {
                found = r.chain;
                std::ops::ControlFlow::Continue(())
            })?;
            match found {
                Some(hash) if hash == digest.hash => Ok(()),
                other => Err(Error::Tampered {
                    offset: digest.offset,
                    expected: hex(&digest.hash),
                    found: other.map(|h| hex(&h)).unwrap_or_default(),
                }),
            }
        })
        .await
    }

    /// The state as of `offset` with the digest at that offset: a point-in-time read whose
    /// history a third party can check against a published digest.
    pub async fn state_at_verified(&self, offset: Offset) -> Result<(State, Digest)> {
        let state = self.state_at(offset).await?;
        let digest = self.digest_at(offset)?;
        if state.chain().is_some_and(|c| c != digest.hash) {
            return Err(Error::Tampered {
                offset,
                expected: hex(&digest.hash),
                found: state.chain().map(|h| hex(&h)).unwrap_or_default(),
            });
        }
        Ok((state, digest))
    }
}

impl ContextManager {
    /// An audit proof of the history up to `offset`: every record from the log's start (or,
    /// after compaction, from the newest snapshot the log continues from), and the digest at
    /// `offset`. Checked here before it is returned.
    pub async fn audit_export(&self, offset: Offset) -> Result<crate::audit::AuditProof> {
        let digest = self.digest_at(offset)?;
        let reader = self.inner.reader.clone();
        // After a compaction the history starts right after its base snapshot.
        let first = reader.first_offset().max(self.state().compacted_before());
        let base = if first > Offset::FIRST {
            let state = self.state_at(first.prev()).await?;
            rmp_serde::to_vec(&state).map_err(|e| {
                Error::Recovery(crate::error::RecoveryError::BadSnapshot {
                    file: self.inner.config.dir.clone(),
                    reason: format!("base state does not encode: {e}"),
                })
            })?
        } else {
            Vec::new()
        };
        let store_id = reader.store_id();
        let proof = blocking(move || {
            let mut records = Vec::new();
            reader.scan(first, offset, |r| {
                records.push((r.offset, serde_bytes::ByteBuf::from(r.payload.to_vec())));
                std::ops::ControlFlow::Continue(())
            })?;
            Ok(crate::audit::AuditProof {
                store_id,
                base,
                records,
                digest,
            })
        })
        .await?;
        proof.check()?;
        Ok(proof)
    }
}
