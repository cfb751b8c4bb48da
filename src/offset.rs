//! The log's clock: [`Offset`], a commit's sequence number.

use std::fmt;

/// A commit's sequence number: starts at 1, grows by 1 per commit, never reused. `Offset(0)`
/// means "nothing" (the version of a context that never existed).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Offset(pub u64);

impl Offset {
    /// "Nothing": before the first commit.
    pub const ZERO: Offset = Offset(0);
    /// The first commit of a store.
    pub const FIRST: Offset = Offset(ctxlog_format::layout::FIRST_OFFSET);

    /// The offset after this one.
    pub fn next(self) -> Offset {
        Offset(self.0 + 1)
    }

    /// The offset before this one (saturating at zero).
    pub fn prev(self) -> Offset {
        Offset(self.0.saturating_sub(1))
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for Offset {
    fn from(v: u64) -> Self {
        Offset(v)
    }
}
