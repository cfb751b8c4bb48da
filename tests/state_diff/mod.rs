//! What differs between two states, shared by the test support modules (each includes this
//! file with `#[path]`), so that every suite reports a mismatch the same short way.

use ctxlog::state::State;
use std::collections::BTreeSet;

/// What differs between two states, or `None` if they are equal. Compared through the public
/// API: offset, every context ever created (deleted flag, version, creation offset, labels,
/// values), the active set, current and default contexts, recovery points.
pub fn state_diff(a: &State, b: &State) -> Option<String> {
    let mut out = Vec::new();
    if a.offset() != b.offset() {
        out.push(format!("offset {} / {}", a.offset(), b.offset()));
    }
    let names: BTreeSet<&str> = a
        .all_contexts()
        .chain(b.all_contexts())
        .map(|(n, _)| n)
        .collect();
    for n in names {
        match (a.context_any(n), b.context_any(n)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => out.push(format!(
                "context {n:?}: {:?} / {:?}",
                x.map(|c| (c.is_deleted(), c.version(), c.len())),
                y.map(|c| (c.is_deleted(), c.version(), c.len()))
            )),
        }
    }
    let active = |s: &State| s.active().map(str::to_string).collect::<Vec<_>>();
    if active(a) != active(b) {
        out.push(format!("active {:?} / {:?}", active(a), active(b)));
    }
    if a.current() != b.current() {
        out.push(format!("current {:?} / {:?}", a.current(), b.current()));
    }
    if a.default_context() != b.default_context() {
        out.push(format!(
            "default {:?} / {:?}",
            a.default_context(),
            b.default_context()
        ));
    }
    if a.recovery_points() != b.recovery_points() {
        out.push(format!(
            "points {:?} / {:?}",
            a.recovery_points(),
            b.recovery_points()
        ));
    }
    if out.is_empty() && a != b {
        out.push("states differ in a field the public API does not show".into());
    }
    (!out.is_empty()).then(|| out.join("; "))
}
