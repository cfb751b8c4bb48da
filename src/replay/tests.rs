//! The replay's fast paths against the one full decoder and the one in-order apply: whatever
//! [`parse_value_sets`] accepts, [`Commit::decode`] reads the same way, and batches applied
//! through [`Pending`] end in the state (or fail at the offset) that applying commit after
//! commit gives.

use super::batch::{parse_value_sets, Batch};
use super::pending::Applier;
use super::slabs::Slabs;
use crate::error::{Error, RecoveryError};
use crate::event::{Commit, Event, Labels, SCHEMA_VERSION};
use crate::offset::Offset;
use crate::state::State;
use proptest::prelude::*;
use serde_bytes::ByteBuf;

fn encode(commit: &Commit) -> Vec<u8> {
    let mut out = Vec::new();
    commit.encode_into(&mut out);
    out
}

/// A commit of `events` in this build's schema.
fn commit(events: Vec<Event>) -> Commit {
    Commit {
        v: SCHEMA_VERSION,
        ts: 1,
        events,
    }
}

fn create(context: &str) -> Event {
    Event::ContextCreated {
        context: context.into(),
        labels: Labels::new(),
    }
}

fn set(context: &str, key: &str, value: Vec<u8>) -> Event {
    Event::ValueSet {
        context: context.into(),
        key: key.into(),
        value: ByteBuf::from(value),
    }
}

/// The events `parse_value_sets` reads, as `ValueSet`s.
fn parsed(payload: &[u8]) -> Option<(u64, Vec<Event>)> {
    let mut events = Vec::new();
    let ts = parse_value_sets(payload, |context, key, value| {
        events.push(Event::ValueSet {
            context: context.into(),
            key: key.into(),
            value: ByteBuf::from(value),
        })
    })?;
    Some((ts, events))
}

fn value_set() -> impl Strategy<Value = Event> {
    (
        "[a-c]|ctx-[0-9]{1,3}|\\PC{20,30}",
        "k[0-9]|\\PC{0,40}",
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(context, key, value)| Event::ValueSet {
            context,
            key,
            value: ByteBuf::from(value),
        })
}

/// Events over three contexts: enough creates, deletes and restores that sets often meet a
/// context that is not live.
fn event() -> impl Strategy<Value = Event> {
    let context = || prop::sample::select(vec!["a", "b", "c"]).prop_map(String::from);
    let key = || {
        prop::sample::select(vec![
            "k1",
            "k2",
            "a-key-longer-than-24-bytes-so-on-the-heap",
        ])
    };
    prop_oneof![
        3 => context().prop_map(|context| Event::ContextCreated { context, labels: Labels::new() }),
        // Sizes on both sides of the slab rules (empty, shared, own buffer), and large ones.
        6 => (context(), key(), any::<u8>(), prop::sample::select(vec![0, 1, 1, 200, 4096, 4097, 70_000]))
            .prop_map(|(context, key, v, len)| Event::ValueSet {
                context,
                key: key.into(),
                value: ByteBuf::from(vec![v; len]),
            }),
        1 => (context(), key()).prop_map(|(context, key)| Event::ValueRemoved {
            context,
            key: key.into(),
        }),
        1 => context().prop_map(|context| Event::ContextDeleted { context }),
        1 => context().prop_map(|context| Event::ContextRestored {
            context,
            from_offset: Offset(1),
            image: None,
        }),
        1 => context().prop_map(|context| Event::MetadataChanged {
            context,
            set: Labels::from([("l".to_string(), "v".to_string())]),
            removed: vec![],
        }),
        1 => context().prop_map(|context| Event::Activated { context }),
    ]
}

fn commits(events: impl Strategy<Value = Event>) -> impl Strategy<Value = Vec<Commit>> {
    prop::collection::vec(
        (
            1..=SCHEMA_VERSION,
            any::<u64>(),
            prop::collection::vec(events, 1..4),
        )
            .prop_map(|(v, ts, events)| Commit { v, ts, events }),
        1..60,
    )
}

/// Applies commit after commit; the first failure's offset.
fn in_order(commits: &[Commit]) -> (State, Option<Offset>) {
    let mut state = State::default();
    for (i, commit) in commits.iter().enumerate() {
        let offset = Offset(i as u64 + 1);
        if state.apply_commit(offset, commit).is_err() {
            return (state, Some(offset));
        }
    }
    (state, None)
}

/// Applies the encoded commits through batches of `batch` commits and a `window`.
fn batched(commits: &[Commit], batch: usize, window: usize) -> (State, Option<Offset>) {
    let mut state = State::default();
    let failed = {
        let mut applier = Applier::with_limits(&mut state, window, Slabs::with_limits(1, 0, 0));
        let mut b = Batch::with_capacity(batch);
        let mut run = || {
            for (i, commit) in commits.iter().enumerate() {
                b.push(Offset(i as u64 + 1), &encode(commit), None)?;
                if b.is_full() {
                    applier.apply(&mut b)?;
                }
            }
            applier.apply(&mut b)
        };
        run().and_then(|()| applier.finish().map(|_| ())).err()
    };
    let failed = failed.map(|e| match e {
        Error::Recovery(RecoveryError::Inconsistent { offset, .. }) => offset,
        other => panic!("unexpected error {other}"),
    });
    (state, failed)
}

proptest! {
    #[test]
    fn value_set_commits_parse_as_the_decoder_reads_them(
        commit in (1..=SCHEMA_VERSION, any::<u64>(), prop::collection::vec(value_set(), 0..5))
            .prop_map(|(v, ts, events)| Commit { v, ts, events })
    ) {
        let payload = encode(&commit);
        let (ts, events) = parsed(&payload).expect("fast path takes a ValueSet commit");
        prop_assert_eq!(ts, commit.ts);
        prop_assert_eq!(&events, &commit.events);
        prop_assert_eq!(Commit::decode(Offset(1), &payload).expect("decodes"), commit);
    }

    #[test]
    fn whatever_the_fast_path_accepts_decodes_the_same(
        commit in (1..=SCHEMA_VERSION, any::<u64>(), prop::collection::vec(value_set(), 0..3))
            .prop_map(|(v, ts, events)| Commit { v, ts, events }),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<bool>(),
    ) {
        let mut payload = encode(&commit);
        let i = at.index(payload.len());
        if cut { payload.truncate(i) } else { payload[i] = byte }
        if let Some((ts, events)) = parsed(&payload) {
            let decoded = Commit::decode(Offset(1), &payload);
            prop_assert!(decoded.is_ok(), "fast path accepted what the decoder rejects: {decoded:?}");
            let decoded = decoded.expect("checked");
            prop_assert_eq!(ts, decoded.ts);
            prop_assert_eq!(events, decoded.events);
        }
    }

    #[test]
    fn other_commits_are_left_to_the_decoder(commit in commits(event()).prop_map(|mut c| c.remove(0))) {
        let only_sets = commit.events.iter().all(|e| matches!(e, Event::ValueSet { .. }));
        prop_assert_eq!(parsed(&encode(&commit)).is_some(), only_sets);
    }

    #[test]
    fn batched_replay_matches_in_order_apply(
        commits in commits(event()),
        batch in 1usize..8,
        window in 1usize..16,
    ) {
        let (want, want_failed) = in_order(&commits);
        let (got, got_failed) = batched(&commits, batch, window);
        prop_assert_eq!(got_failed, want_failed, "first failure");
        if want_failed.is_none() {
            prop_assert!(got == want, "states differ");
        }
    }
}

#[test]
fn trailing_bytes_and_newer_schemas_take_the_full_decoder() {
    let commit = commit(vec![set("a", "k", vec![1, 2, 3])]);
    let payload = encode(&commit);
    assert!(parsed(&payload).is_some());
    let mut trailing = payload.clone();
    trailing.push(0xc0);
    assert!(parsed(&trailing).is_none());
    let newer = encode(&Commit {
        v: SCHEMA_VERSION + 1,
        ..commit
    });
    assert!(parsed(&newer).is_none());
    assert!(matches!(
        Commit::decode(Offset(1), &newer),
        Err(RecoveryError::UnsupportedSchema { .. })
    ));
}

/// Windows smaller than the number of contexts make the gathering forget its contexts at
/// every flush and meet them again: the state must not notice.
#[test]
fn forgetting_contexts_between_flushes_changes_nothing() {
    let mut commits = vec![commit(vec![create("a"), create("b"), create("c")])];
    for round in 0..4u8 {
        for (i, c) in ["a", "b", "a", "c", "b", "c", "a"].into_iter().enumerate() {
            commits.push(commit(vec![set(
                c,
                ["k1", "k2"][i % 2],
                vec![round * 10 + i as u8],
            )]));
        }
    }
    let (want, want_failed) = in_order(&commits);
    assert_eq!(want_failed, None);
    for window in 1..=4 {
        for batch in [1, 3, 64] {
            let (got, got_failed) = batched(&commits, batch, window);
            assert_eq!(got_failed, None, "window {window}, batch {batch}");
            assert!(got == want, "window {window}, batch {batch}: states differ");
        }
    }
}

/// A log that overwrites most keys leaves the slabs of the first values sparse: replay copies
/// their survivors out, so that no slab is held by fewer than half its values, and the state
/// is still the one applying every commit in order gives.
#[test]
fn replay_lets_go_of_sparse_slabs() {
    let set = |k: usize, round: u8| set("a", &format!("k{k}"), vec![round; 100]);
    let mut commits = vec![commit(vec![create("a")])];
    commits.extend((0..3000).map(|k| commit(vec![set(k, 1)])));
    // Most keys again, and a few more times: the first 1,000-commit slabs keep 1 value in 30.
    commits.extend(
        (0..3000)
            .filter(|k| k % 30 != 0)
            .map(|k| commit(vec![set(k, 2)])),
    );
    let (want, _) = in_order(&commits);
    let (got, failed) = batched(&commits, 1000, 256);
    assert_eq!(failed, None);
    assert!(got == want, "states differ");
    let mut users = std::collections::HashMap::new();
    for blob in got.blobs().filter(|b| !b.is_whole()) {
        users
            .entry(std::sync::Arc::as_ptr(blob.buffer()))
            .or_insert((blob.buffer().clone(), 0usize))
            .1 += 1;
    }
    assert!(
        !users.is_empty(),
        "values of the second pass stay in their slabs"
    );
    for (slab, live) in users.into_values() {
        // Each value is 100 bytes: a slab of `len / 100` values.
        let held = slab.len() / 100;
        assert!(2 * live >= held, "a slab of {held} values held by {live}");
    }
}

/// An empty value is staged like any other (the batch's slab may then be empty).
#[test]
fn empty_values_replay() {
    let set = |k: &str, value: Vec<u8>| set("u", k, value);
    let commits = vec![
        commit(vec![create("u")]),
        commit(vec![set("k", vec![])]),
        commit(vec![set("big", vec![7; 5000]), set("e", vec![])]),
    ];
    let (want, _) = in_order(&commits);
    for batch in [1, 2, 64] {
        let (got, failed) = batched(&commits, batch, 256);
        assert_eq!(failed, None);
        assert!(got == want, "batch {batch}: states differ");
    }
}

/// A log written through the WAL (in memory), and its reader.
fn logged(commits: &[Commit]) -> crate::wal::LogReader {
    use crate::wal::{Durability, RecordBatch, Wal, WalConfig};
    let config = WalConfig {
        durability: Durability::Never,
        ..WalConfig::default()
    };
    let storage = std::sync::Arc::new(crate::storage::MemStorage::new());
    let wal = Wal::open(storage, "store".as_ref(), config).expect("open");
    for chunk in commits.chunks(500) {
        let mut batch = RecordBatch::new();
        for commit in chunk {
            batch.push(&encode(commit));
        }
        wal.append_batch_blocking(batch).expect("append");
    }
    let reader = wal.reader();
    assert_eq!(reader.last_offset(), Offset(commits.len() as u64));
    reader
}

/// Commits for the two-thread replay: many contexts, values of every size class (empty,
/// small, past a slab's 4 KiB limit), commits of more events than a batch holds, and contexts
/// deleted and created again.
fn pipeline_commits(failing_at: Option<usize>) -> Vec<Commit> {
    let name = |c: usize| format!("c{c}");
    let set = |c: usize, k: usize, len: usize| {
        set(&name(c), &format!("k{k}"), vec![(c * 7 + k) as u8; len])
    };
    let create = |c: usize| create(&name(c));
    let mut commits = vec![commit((0..40).map(create).collect())];
    for i in 1..9_000usize {
        let events = match i {
            _ if Some(i) == failing_at => vec![set(99, 1, 10)],
            _ if i % 1_500 == 0 => (0..1_500).map(|k| set(k % 40, k, 30)).collect(),
            _ if i % 997 == 0 => vec![Event::ContextDeleted {
                context: name(i % 40),
            }],
            _ if i % 997 == 1 && i > 1 => vec![create((i - 1) % 40)],
            _ => vec![set(i % 40, i % 300, [0, 20, 200, 5_000][i % 4])],
        };
        commits.push(commit(events));
    }
    commits
}

/// The two-thread replay, whatever the budget of bytes decoded ahead (1 byte: every batch
/// waits for the one before to come back), ends in the in-order state.
#[test]
fn pipelined_replay_matches_in_order_apply() {
    let commits = pipeline_commits(None);
    let (want, failed) = in_order(&commits);
    assert_eq!(failed, None);
    let reader = logged(&commits);
    for ahead in [super::REPLAY_AHEAD_BYTES, 300 << 10, 1] {
        let mut got = State::default();
        let replayed =
            super::replay_ahead(&reader, &mut got, reader.last_offset(), ahead).expect("replay");
        assert_eq!(replayed.commits, commits.len() as u64, "ahead {ahead}");
        assert!(got == want, "ahead {ahead}: states differ");
    }
}

/// A set that fails stops the replay at its offset, with the decoding thread waiting on the
/// budget or on the channel: no hang, and the in-order failure.
#[test]
fn pipelined_replay_fails_where_in_order_apply_does() {
    let commits = pipeline_commits(Some(2_500));
    let (_, failed) = in_order(&commits);
    assert_eq!(failed, Some(Offset(2_501)));
    let reader = logged(&commits);
    for ahead in [super::REPLAY_AHEAD_BYTES, 1] {
        let mut got = State::default();
        match super::replay_ahead(&reader, &mut got, reader.last_offset(), ahead) {
            Err(Error::Recovery(RecoveryError::Inconsistent { offset, .. })) => {
                assert_eq!(offset, Offset(2_501), "ahead {ahead}")
            }
            other => panic!("ahead {ahead}: {other:?}"),
        }
    }
}

/// A record that does not decode, after a set that fails: the set comes first in the log, so
/// its failure is the one reported, as an in-order replay would.
#[test]
fn a_failing_set_before_an_undecodable_record_is_reported_first() {
    let create = encode(&commit(vec![create("a")]));
    let orphan = encode(&commit(vec![set("missing", "k", vec![1])]));
    let garbage = [0xc1u8, 0xff, 0x00];
    let records = [
        (Offset(1), &create[..]),
        (Offset(2), &orphan[..]),
        (Offset(3), &garbage[..]),
    ];
    match super::apply_payloads(&mut State::default(), records) {
        Err(Error::Recovery(RecoveryError::Inconsistent { offset, .. })) => {
            assert_eq!(offset, Offset(2))
        }
        other => panic!("{other:?}"),
    }
    // Without the failing set, the record's own error.
    let records = [(Offset(1), &create[..]), (Offset(2), &garbage[..])];
    assert!(matches!(
        super::apply_payloads(&mut State::default(), records),
        Err(Error::Recovery(RecoveryError::BadCommit { .. }))
    ));
}
