//! Arbitrary bytes as a record payload: `Commit::decode` must never panic, whatever the bytes.
//! A payload that decodes must re-encode and decode to the same commit, and applying it to a
//! small state must not panic either: it applies or it is refused with an `ApplyError`, and
//! replay's own path (`replay::apply_payloads`: the serde-free `ValueSet` decoder, sets gathered
//! per context) accepts the same bytes and ends in the same state.
#![no_main]

use ctxlog::event::{Commit, Event, SCHEMA_VERSION};
use ctxlog::state::State;
use ctxlog::Offset;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// A state with a few contexts, keys, labels, a recovery point and an adapter status, so that
/// decoded events find something to apply to (or to conflict with).
fn base() -> &'static State {
    static BASE: OnceLock<State> = OnceLock::new();
    BASE.get_or_init(|| {
        let text = |s: &str| s.to_string();
        let labels = [(text("l"), text("v"))].into_iter().collect();
        let events = vec![
            Event::ContextCreated {
                context: text("a"),
                labels: Default::default(),
            },
            Event::ContextCreated {
                context: text("b"),
                labels,
            },
            Event::ValueSet {
                context: text("a"),
                key: text("k"),
                value: vec![7].into(),
            },
            Event::RecoveryPointCreated { label: text("p") },
            Event::Switched {
                from: None,
                to: text("b"),
            },
        ];
        let commit = Commit {
            v: SCHEMA_VERSION,
            ts: 0,
            events,
        };
        let mut state = State::default();
        state
            .apply_commit(Offset(1), &commit)
            .expect("the base commit applies");
        state
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(commit) = Commit::decode(Offset(2), data) else {
        return;
    };
    let mut again = Vec::new();
    commit.encode_into(&mut again);
    let back = Commit::decode(Offset(2), &again).expect("a decoded commit re-encodes readably");
    assert_eq!(back, commit, "encode/decode is not a round trip");
    let mut state = base().clone();
    let applied = state.apply_commit(Offset(2), &commit);
    if applied.is_ok() {
        assert_eq!(state.offset(), Offset(2));
    }
    // Replay's path (its own decoder for ValueSet commits, sets gathered per context) must
    // accept exactly the same bytes and end in the same state.
    let mut replayed = base().clone();
    let via_replay = ctxlog::replay::apply_payloads(&mut replayed, [(Offset(2), data)]);
    assert_eq!(via_replay.is_ok(), applied.is_ok(), "replay and apply disagree: {via_replay:?}");
    if applied.is_ok() {
        assert!(replayed == state, "replay and apply end in different states");
    }
});
