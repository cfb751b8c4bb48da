//! [`RecordBatch`]: many payloads in one buffer, appended as consecutive records.
//!
//! Why one buffer: a bulk load that hands the log a `Vec<Vec<u8>>` allocates once per record
//! on the caller's thread and frees once per record on the writer thread (a cross-thread free
//! that the allocator pays for). A batch is two buffers, whatever its length (two allocations
//! when sized up front with [`RecordBatch::with_capacity`]), and the writer frames each record
//! straight from them.

/// Payloads packed end to end, with the end of each. Built with [`RecordBatch::push`] (or
/// collected from any iterator of byte slices) and appended whole by
/// [`Wal::append_batch`](super::Wal::append_batch), which takes or refuses it whole.
///
/// ```
/// use ctxlog::wal::RecordBatch;
/// let mut batch = RecordBatch::with_capacity(2, 8);
/// batch.push(b"one");
/// batch.push(b"three");
/// assert_eq!(batch.len(), 2);
/// assert_eq!(batch.iter().collect::<Vec<_>>(), [&b"one"[..], &b"three"[..]]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordBatch {
    bytes: Vec<u8>,
    /// `ends[i]` is the end of payload `i` in `bytes`; payload `i` starts at `ends[i - 1]`.
    ends: Vec<usize>,
}

impl RecordBatch {
    /// An empty batch.
    pub fn new() -> RecordBatch {
        RecordBatch::default()
    }

    /// An empty batch with room for `records` payloads of `bytes` bytes in all.
    pub fn with_capacity(records: usize, bytes: usize) -> RecordBatch {
        RecordBatch {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(records),
        }
    }

    /// Adds a payload after the others.
    pub fn push(&mut self, payload: &[u8]) {
        self.bytes.extend_from_slice(payload);
        self.ends.push(self.bytes.len());
    }

    /// Number of payloads.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True if the batch holds no payload.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of all payloads together.
    pub fn payload_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The payloads, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.ends.len()).map(|i| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            &self.bytes[start..self.ends[i]]
        })
    }
}

impl<P: AsRef<[u8]>> FromIterator<P> for RecordBatch {
    fn from_iter<I: IntoIterator<Item = P>>(payloads: I) -> RecordBatch {
        let mut batch = RecordBatch::new();
        batch.extend(payloads);
        batch
    }
}

impl<P: AsRef<[u8]>> Extend<P> for RecordBatch {
    fn extend<I: IntoIterator<Item = P>>(&mut self, payloads: I) {
        for p in payloads {
            self.push(p.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RecordBatch;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn iter_gives_back_what_was_pushed(payloads in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..40), 0..20)) {
            let batch: RecordBatch = payloads.iter().collect();
            prop_assert_eq!(batch.len(), payloads.len());
            prop_assert_eq!(batch.is_empty(), payloads.is_empty());
            prop_assert_eq!(batch.payload_bytes(), payloads.iter().map(Vec::len).sum::<usize>());
            let back: Vec<Vec<u8>> = batch.iter().map(<[u8]>::to_vec).collect();
            prop_assert_eq!(back, payloads);
        }
    }
}
