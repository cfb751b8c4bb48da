//! Subscription filters: by context, prefix and kind, with lifecycle events (adapter
//! activations and switches, deletions, recovery points, acknowledgements) coming through, and
//! `Filter::matches` against its documentation.
//!
//! Each filtered subscription is checked against the log filtered by the reference filter
//! (`subscribe_support::Spec`), and against hand-written expectations.

mod subscribe_support;

use ctxlog::event::Event;
use ctxlog::manager::{Filter, SubscribedEvent};
use ctxlog::storage::MemStorage;
use ctxlog::{create_adapter, Offset, Update};
use subscribe_support::{assert_same, drain_to_end, expected, open_mem, take, Spec};

fn kinds_of(events: &[SubscribedEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.event.kind()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_by_context_prefix_and_kind_and_lifecycle_events_come_through() {
    let mem = MemStorage::new();
    let m = open_mem(&mem).await;
    let specs = [
        ("users", Spec::Context("users")),
        ("team-", Spec::Prefix("team-")),
        (
            "created/deleted",
            Spec::Kinds(vec!["ContextCreated", "ContextDeleted"]),
        ),
        (
            "adapter",
            Spec::Kinds(vec![
                "Activated",
                "Deactivated",
                "Switched",
                "DefaultChanged",
            ]),
        ),
        (
            "team-a values",
            Spec::ContextKinds("team-a", vec!["ValueSet"]),
        ),
        ("all", Spec::All),
    ];
    // Every subscription starts before the first commit, so all of it arrives live.
    let mut subs: Vec<_> = specs
        .iter()
        .map(|(who, spec)| {
            let sub = m
                .subscribe(Offset::FIRST, spec.filter())
                .expect("subscribe");
            (*who, spec.clone(), sub)
        })
        .collect();

    for c in ["users", "team-a", "team-b", "other"] {
        m.create(c).await.unwrap();
    }
    m.set("users", "x", &1u8).await.unwrap();
    m.set("team-a", "k", &2u8).await.unwrap();
    m.update(
        Update::new()
            .set("team-b", "k", &3u8)
            .unwrap()
            .set("other", "k", &4u8)
            .unwrap(),
    )
    .await
    .unwrap();
    let adapter = create_adapter(&m).await.unwrap();
    adapter.activate("team-a").await.unwrap();
    adapter.switch_to("users").await.unwrap();
    adapter.switch_to("team-b").await.unwrap();
    adapter.deactivate("team-b").await.unwrap();
    adapter.set_default(Some("users")).await.unwrap();
    m.delete("other").await.unwrap();
    m.create_recovery_point("p1").await.unwrap();
    m.create("other").await.unwrap();
    m.ack_consumer("audit", Offset(3)).await.unwrap();
    m.set("team-a", "k", &5u8).await.unwrap();

    let switched = |from: Option<&str>, to: &str| Event::Switched {
        from: from.map(str::to_string),
        to: to.to_string(),
    };
    for (who, spec, sub) in &mut subs {
        let want = expected(&m, Offset::FIRST, spec).await;
        let got = take(sub, want.len()).await;
        assert_same(who, &got, &want);
        // Hand-written expectations, so that a reference filter that agrees with a wrong
        // engine filter cannot hide it.
        match *who {
            "users" => {
                assert_eq!(
                    kinds_of(&got),
                    [
                        "ContextCreated",
                        "ValueSet",
                        "Switched",
                        "Switched",
                        "DefaultChanged"
                    ]
                );
                assert_eq!(got[2].event, switched(None, "users"));
                // The switch away from "users" concerns it too.
                assert_eq!(got[3].event, switched(Some("users"), "team-b"));
            }
            "team-" => {
                assert_eq!(
                    kinds_of(&got),
                    [
                        "ContextCreated",
                        "ContextCreated",
                        "ValueSet",
                        "ValueSet",
                        "Activated",
                        "Switched",
                        "Deactivated",
                        "ValueSet"
                    ]
                );
                // The multi-context commit: only its "team-b" event, at index 0.
                assert_eq!(got[3].index, 0);
                assert!(
                    matches!(&got[3].event, Event::ValueSet { context, .. } if context == "team-b")
                );
            }
            "created/deleted" => {
                let names: Vec<(&str, &str)> = got
                    .iter()
                    .map(|e| (e.event.kind(), e.event.context().unwrap()))
                    .collect();
                assert_eq!(
                    names,
                    [
                        ("ContextCreated", "users"),
                        ("ContextCreated", "team-a"),
                        ("ContextCreated", "team-b"),
                        ("ContextCreated", "other"),
                        ("ContextDeleted", "other"),
                        ("ContextCreated", "other"),
                    ]
                );
            }
            "adapter" => {
                let events: Vec<Event> = got.iter().map(|e| e.event.clone()).collect();
                assert_eq!(
                    events,
                    [
                        Event::Activated {
                            context: "team-a".into()
                        },
                        switched(None, "users"),
                        switched(Some("users"), "team-b"),
                        Event::Deactivated {
                            context: "team-b".into()
                        },
                        Event::DefaultChanged {
                            context: Some("users".into())
                        },
                    ]
                );
            }
            "team-a values" => {
                assert_eq!(got.len(), 2);
                assert!(got.iter().all(|e| e.event.kind() == "ValueSet"));
            }
            "all" => {
                // Events with no context come through only unfiltered.
                let kinds = kinds_of(&got);
                assert!(kinds.contains(&"RecoveryPointCreated"));
                assert!(kinds.contains(&"ConsumerAcked"));
                let commits = m.events(Offset::FIRST).await.unwrap();
                let total: usize = commits.iter().map(|c| c.events.len()).sum();
                assert_eq!(got.len(), total);
            }
            other => unreachable!("{other}"),
        }
    }
    m.close().await.unwrap();
    for (who, _, mut sub) in subs {
        let rest = drain_to_end(&mut sub).await;
        assert!(rest.is_empty(), "{who}: extra events {rest:?}");
    }
}

#[test]
fn filter_matches_follows_its_documentation() {
    let set = |c: &str| Event::ValueSet {
        context: c.into(),
        key: "k".into(),
        value: Default::default(),
    };
    let switch = Event::Switched {
        from: Some("old".into()),
        to: "new".into(),
    };
    let point = Event::RecoveryPointCreated { label: "p".into() };
    assert!(Filter::all().matches(&point));
    assert!(!Filter::all().context("x").matches(&point));
    assert!(Filter::all().context("old").matches(&switch));
    assert!(Filter::all().context("new").matches(&switch));
    assert!(Filter::all().prefix("ol").matches(&switch));
    assert!(
        !Filter::all().context("ne").matches(&switch),
        "names are exact"
    );
    assert!(Filter::all().context("a").context("b").matches(&set("b")));
    assert!(Filter::all().context("a").prefix("b").matches(&set("bc")));
    assert!(!Filter::all().context("a").prefix("b").matches(&set("cb")));
    assert!(Filter::all().kinds(["ValueSet"]).matches(&set("x")));
    assert!(!Filter::all().kinds(["ValueSet"]).matches(&switch));
    assert!(
        !Filter::all()
            .context("x")
            .kinds(["Switched"])
            .matches(&set("x")),
        "kind and context must both match"
    );
    assert!(Filter::all()
        .kinds(["ValueRemoved"])
        .kinds(["ValueSet"])
        .matches(&set("x")));
}
