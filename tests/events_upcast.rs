//! Versioned payloads and upcasters, and the stores older builds wrote.
//!
//! The store in tests/fixtures/v2-versioned-store was written by the build that introduced
//! event schema 2: values of kind "user" stored at versions 1 and 2 with
//! `ctxlog::upcast::Versioned::encode`, a snapshot, a JSON Schema, a durable consumer. Every
//! later version must open it and read every user as the application's current version. Like
//! tests/fixture_v1.rs, the fixture tests here are kept forever: never delete or loosen them,
//! and never regenerate the fixture to make them pass. Regenerate only if the fixture is lost:
//! `CTXLOG_WRITE_V2_FIXTURE=1 cargo test --test events_upcast`.

use ctxlog::error::{Error, InvalidInput};
use ctxlog::event::Event;
use ctxlog::manager::Filter;
use ctxlog::upcast::{UpcastError, Upcasters, Versioned};
use ctxlog::{create_manager_with_config, Config, ContextManager, Offset, Update};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

// ---- the schema-2 fixture ----

fn v2_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2-versioned-store")
}

fn v1_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-store")
}

/// The configuration both fixtures were written with (64 KiB segments keep them small).
fn config(dir: &Path) -> Config {
    let mut c = Config::new(dir);
    c.segment_bytes = 64 * 1024;
    c.record_bytes_max = 16 * 1024;
    c
}

fn user_v1(name: &str) -> ctxlog::model::Value {
    Versioned::encode("user", 1, &json!({ "name": name })).unwrap()
}

fn user_v2(first: &str, last: &str) -> ctxlog::model::Value {
    Versioned::encode("user", 2, &json!({ "first": first, "last": last })).unwrap()
}

/// Writes the fixture. Offsets are fixed: the test below names them.
async fn write_v2_fixture(dir: &Path) {
    let m = create_manager_with_config(config(dir)).await.unwrap();
    m.create("users").await.unwrap(); // 1
    m.set_value("users", "ada", user_v1("Ada Lovelace"))
        .await
        .unwrap(); // 2
    m.set_value("users", "grace", user_v1("Grace Hopper"))
        .await
        .unwrap(); // 3
    m.set_value("users", "plato", user_v1("Plato"))
        .await
        .unwrap(); // 4
    m.set_value("users", "edsger", user_v1("Edsger Dijkstra"))
        .await
        .unwrap(); // 5
    m.create_recovery_point("all-v1").await.unwrap(); // 6
    assert_eq!(m.snapshot_now().await.unwrap(), Offset(6));
    m.set_value("users", "alan", user_v2("Alan", "Turing"))
        .await
        .unwrap(); // 7
    m.set_value("users", "edsger", user_v2("Edsger W.", "Dijkstra"))
        .await
        .unwrap(); // 8
    m.update(
        Update::new()
            .create("billing")
            .set("billing", "plan", "pro")
            .unwrap(),
    )
    .await
    .unwrap(); // 9
    m.attach_schema("billing", &billing_schema()).await.unwrap(); // 10
    m.ack_consumer("mailer", Offset(8)).await.unwrap(); // 11
    let last = m
        .set_value("users", "barbara", user_v2("Barbara", "Liskov"))
        .await
        .unwrap(); // 12
    assert_eq!(last.offset, Offset(12));
    m.close().await.unwrap();
}

fn billing_schema() -> Json {
    json!({"type": "object", "required": ["plan"]})
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Version 3 of "user", the application's current one.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct User {
    first: String,
    last: String,
    email: Option<String>,
}

fn user(first: &str, last: &str) -> User {
    User {
        first: first.into(),
        last: last.into(),
        email: None,
    }
}

/// 1 -> 2 splits "name" at its first space; 2 -> 3 adds "email": null.
fn upcasters() -> Upcasters {
    Upcasters::new()
        .register("user", 1, |v| {
            let name = v["name"].as_str().ok_or("version 1 user without a name")?;
            let (first, last) = name.split_once(' ').unwrap_or((name, ""));
            Ok(json!({ "first": first, "last": last }))
        })
        .register("user", 2, |mut v| {
            v.as_object_mut()
                .ok_or("version 2 user is not an object")?
                .insert("email".into(), Json::Null);
            Ok(v)
        })
}

async fn open_copy(fixture: &Path, upcasters: Upcasters) -> (tempfile::TempDir, ContextManager) {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(fixture, tmp.path());
    let mut c = config(tmp.path());
    c.upcasters = upcasters;
    let m = create_manager_with_config(c)
        .await
        .expect("open the fixture copy");
    (tmp, m)
}

fn stored_version(m: &ContextManager, key: &str) -> u32 {
    m.get_as::<Versioned<Json>>("users", key).unwrap().version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_2_store_with_versioned_values_stays_readable() {
    if std::env::var_os("CTXLOG_WRITE_V2_FIXTURE").is_some() {
        let _ = std::fs::remove_dir_all(v2_fixture());
        write_v2_fixture(&v2_fixture()).await;
        let _ = std::fs::remove_file(v2_fixture().join("LOCK"));
    }
    let (_tmp, m) = open_copy(&v2_fixture(), upcasters()).await;
    let report = m.open_report();
    assert!(report.log.torn_tail.is_none(), "{report:?}");
    assert!(report.skipped_snapshots.is_empty(), "{report:?}");
    assert_eq!(
        report.snapshot,
        Some(Offset(6)),
        "started from the snapshot"
    );
    assert_eq!(report.replayed, 6);
    assert_eq!(m.last_offset(), Offset(12));

    // The fixture holds what it says: old versions, as written.
    let stored: BTreeMap<&str, u32> = ["ada", "grace", "plato", "edsger", "alan", "barbara"]
        .into_iter()
        .map(|k| (k, stored_version(&m, k)))
        .collect();
    assert_eq!(
        stored,
        BTreeMap::from([
            ("ada", 1),
            ("alan", 2),
            ("barbara", 2),
            ("edsger", 2),
            ("grace", 1),
            ("plato", 1)
        ])
    );

    // Every user reads as version 3.
    let users: BTreeMap<String, User> = m
        .get("users")
        .unwrap()
        .keys()
        .map(|k| (k.to_string(), m.get_versioned::<User>("users", k).unwrap()))
        .collect();
    assert_eq!(
        users,
        BTreeMap::from([
            ("ada".to_string(), user("Ada", "Lovelace")),
            ("alan".to_string(), user("Alan", "Turing")),
            ("barbara".to_string(), user("Barbara", "Liskov")),
            ("edsger".to_string(), user("Edsger W.", "Dijkstra")),
            ("grace".to_string(), user("Grace", "Hopper")),
            ("plato".to_string(), user("Plato", "")),
        ])
    );
    // Exactly version 3's shape, "email": null included.
    assert_eq!(
        m.get_versioned::<Json>("users", "ada").unwrap(),
        json!({"first": "Ada", "last": "Lovelace", "email": null})
    );

    // The version-1 value the snapshot holds upcasts too, read at its offset.
    let at = m.state_at("all-v1").await.unwrap();
    let edsger_v1 = at.context("users").unwrap().get("edsger").unwrap();
    assert_eq!(
        upcasters().decode::<User>(&edsger_v1).unwrap(),
        user("Edsger", "Dijkstra")
    );

    // The rest of schema 2 came through: schema, consumer, their events.
    assert_eq!(
        m.get("billing")
            .unwrap()
            .schema()
            .map(|s| serde_json::from_str::<Json>(s).unwrap()),
        Some(billing_schema())
    );
    assert!(matches!(
        m.remove("billing", "plan").await,
        Err(Error::SchemaViolation { .. })
    ));
    assert_eq!(m.consumer_position("mailer"), Offset(8));
    let kinds: Vec<&str> = m
        .events(Offset::FIRST)
        .await
        .unwrap()
        .iter()
        .flat_map(|c| c.events.iter().map(Event::kind))
        .collect();
    assert!(kinds.contains(&"SchemaAttached") && kinds.contains(&"ConsumerAcked"));

    // New writes go at the current version and read back.
    let r = m
        .set_versioned(
            "users",
            "barbara",
            "user",
            &json!({"first": "Barbara", "last": "Liskov", "email": "bl@example.invalid"}),
        )
        .await
        .unwrap();
    assert_eq!(r.offset, Offset(13));
    assert_eq!(stored_version(&m, "barbara"), 3);
    assert_eq!(
        m.get_versioned::<User>("users", "barbara")
            .unwrap()
            .email
            .as_deref(),
        Some("bl@example.invalid")
    );
    m.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_fixture_read_by_older_or_partial_upcasters() {
    // An application that knows only 1 -> 2 reads everything as version 2.
    let only_2 = Upcasters::new().register("user", 1, |v| {
        let name = v["name"].as_str().unwrap_or_default().to_string();
        let (first, last) = name.split_once(' ').unwrap_or((&name, ""));
        Ok(json!({ "first": first, "last": last }))
    });
    let (_tmp, m) = open_copy(&v2_fixture(), only_2).await;
    assert_eq!(
        m.get_versioned::<Json>("users", "grace").unwrap(),
        json!({"first": "Grace", "last": "Hopper"})
    );
    assert_eq!(
        m.get_versioned::<Json>("users", "alan").unwrap(),
        json!({"first": "Alan", "last": "Turing"})
    );
    m.close().await.unwrap();

    // One with no upcasters reads version 1 as it is, and refuses version 2 as from the future.
    let (_tmp, m) = open_copy(&v2_fixture(), Upcasters::new()).await;
    assert_eq!(
        m.get_versioned::<Json>("users", "plato").unwrap(),
        json!({"name": "Plato"})
    );
    match m.get_versioned::<Json>("users", "alan") {
        Err(Error::InvalidInput(InvalidInput::Undecodable {
            context,
            key,
            reason,
        })) => {
            assert_eq!((context.as_str(), key.as_str()), ("users", "alan"));
            assert!(reason.contains("newer"), "{reason}");
        }
        other => panic!("expected a refusal of a version from the future, got {other:?}"),
    }
    // Not versioned at all: the plain value in "billing".
    assert!(matches!(
        m.get_versioned::<Json>("billing", "plan"),
        Err(Error::InvalidInput(InvalidInput::Undecodable { .. }))
    ));
    m.close().await.unwrap();
}

/// Event kinds of schema 1: every commit of a version-1 store is made of these.
const SCHEMA_1_KINDS: [&str; 12] = [
    "ContextCreated",
    "ValueSet",
    "ValueRemoved",
    "MetadataChanged",
    "ContextDeleted",
    "ContextRestored",
    "Activated",
    "Deactivated",
    "Switched",
    "DefaultChanged",
    "RecoveryPointCreated",
    "Compacted",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_1_fixture_decodes_through_the_schema_2_reader() {
    // tests/fixtures/v1-store is tests/fixture_v1.rs's; this only reads a copy of it.
    let (_tmp, m) = open_copy(&v1_fixture(), upcasters()).await;
    let commits = m.events(Offset::FIRST).await.expect("every commit decodes");
    assert_eq!(commits.len(), 312);
    assert!(commits
        .iter()
        .enumerate()
        .all(|(i, c)| c.offset == Offset(i as u64 + 1)));
    for c in &commits {
        assert!(!c.events.is_empty(), "commit {} has no event", c.offset);
        for e in &c.events {
            assert!(
                SCHEMA_1_KINDS.contains(&e.kind()),
                "commit {} holds {:?}, not a schema-1 event",
                c.offset,
                e.kind()
            );
        }
    }
    // Restore images of schema 1 carry no schema.
    assert!(commits.iter().flat_map(|c| &c.events).all(
        |e| !matches!(e, Event::ContextRestored { image: Some(i), .. } if i.schema.is_some())
    ));
    let state = m.state();
    assert!(state.all_contexts().all(|(_, c)| c.schema().is_none()));
    assert_eq!(state.consumer("anyone"), Offset::ZERO);

    // A subscription reads the same version-1 commits.
    let mut sub = m.subscribe(Offset::FIRST, Filter::all()).unwrap();
    let total: usize = commits.iter().map(|c| c.events.len()).sum();
    let mut got = Vec::with_capacity(total);
    while got.len() < total {
        let e = tokio::time::timeout(std::time::Duration::from_secs(30), sub.next())
            .await
            .expect("subscription delivers")
            .expect("not ended")
            .expect("no error");
        got.push((e.offset, e.event));
    }
    let want: Vec<(Offset, Event)> = commits
        .into_iter()
        .flat_map(|c| c.events.into_iter().map(move |e| (c.offset, e)))
        .collect();
    assert_eq!(got, want);

    // Schema-2 commits follow schema-1 ones in the same log.
    m.attach_schema("users", &json!({"type": "object"}))
        .await
        .unwrap();
    m.ack_consumer("billing", Offset(312)).await.unwrap();
    m.close().await.unwrap();
}

// ---- Upcasters, unit by unit ----

#[test]
fn current_is_one_past_the_newest_step_and_one_with_none() {
    let none = Upcasters::new();
    assert_eq!(none.current("user"), 1);
    let u = upcasters();
    assert_eq!(u.current("user"), 3);
    assert_eq!(u.current("order"), 1, "kinds are independent");
    // With no upcaster, version 1 reads as is, and is what encode writes.
    let v1 = Versioned::encode("order", 1, &json!({"n": 1})).unwrap();
    assert_eq!(none.decode::<Json>(&v1).unwrap(), json!({"n": 1}));
    let written = none.encode("order", &json!({"n": 2})).unwrap();
    let back: Versioned<Json> = written.decode().unwrap();
    assert_eq!(
        back,
        Versioned {
            kind: "order".into(),
            version: 1,
            data: json!({"n": 2})
        }
    );
    let written = u.encode("user", &json!({"first": "A"})).unwrap();
    assert_eq!(written.decode::<Versioned<Json>>().unwrap().version, 3);
    // The current version goes through no step.
    assert_eq!(
        u.upcast("user", 3, json!({"anything": true})).unwrap(),
        json!({"anything": true})
    );
}

#[test]
fn a_missing_step_is_named() {
    // 1 -> 2 and 3 -> 4, but no 2 -> 3: current is 4.
    let gap = Upcasters::new()
        .register("user", 1, Ok)
        .register("user", 3, Ok);
    assert_eq!(gap.current("user"), 4);
    let missing = UpcastError::Missing {
        kind: "user".into(),
        version: 2,
        current: 4,
    };
    assert_eq!(gap.upcast("user", 1, json!({})), Err(missing.clone()));
    assert_eq!(gap.upcast("user", 2, json!({})), Err(missing.clone()));
    assert_eq!(gap.decode::<Json>(&user_v2("A", "B")), Err(missing));
    assert_eq!(gap.upcast("user", 3, json!(1)), Ok(json!(1)));
    // Version 0 does not exist: no step from it.
    assert!(matches!(
        gap.upcast("user", 0, json!({})),
        Err(UpcastError::Missing { version: 0, .. })
    ));
}

#[test]
fn a_version_from_the_future_is_refused() {
    let u = upcasters();
    assert_eq!(
        u.upcast("user", 4, json!({})),
        Err(UpcastError::FromTheFuture {
            kind: "user".into(),
            version: 4,
            current: 3
        })
    );
    let v9 = Versioned::encode("user", 9, &json!({})).unwrap();
    assert!(matches!(
        u.decode::<Json>(&v9),
        Err(UpcastError::FromTheFuture {
            version: 9,
            current: 3,
            ..
        })
    ));
    assert!(matches!(
        Upcasters::new().decode::<Json>(&user_v2("A", "B")),
        Err(UpcastError::FromTheFuture {
            version: 2,
            current: 1,
            ..
        })
    ));
}

#[test]
fn a_failing_upcaster_is_named_with_its_reason() {
    let u = upcasters();
    let nameless = Versioned::encode("user", 1, &json!({"nick": "ada"})).unwrap();
    assert_eq!(
        u.decode::<Json>(&nameless),
        Err(UpcastError::Failed {
            kind: "user".into(),
            version: 1,
            reason: "version 1 user without a name".into()
        })
    );
    // The second step fails on a payload the first let through.
    let odd = Versioned::encode("user", 2, &json!(["not", "an", "object"])).unwrap();
    assert!(matches!(
        u.decode::<Json>(&odd),
        Err(UpcastError::Failed { version: 2, .. })
    ));
}

#[test]
fn values_that_are_not_versioned_or_do_not_fit_are_refused() {
    let u = upcasters();
    let plain = ctxlog::model::Value::encode(&7u32).unwrap();
    assert!(matches!(
        u.decode::<Json>(&plain),
        Err(UpcastError::NotVersioned { expected: None, .. })
    ));
    // Upcast fine, but not into this type.
    assert!(matches!(
        u.decode::<u32>(&user_v1("Ada Lovelace")),
        Err(UpcastError::NotVersioned { expected: Some(k), .. }) if k == "user"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_versioned_reports_upcast_failures_as_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path());
    c.upcasters = upcasters();
    let m = create_manager_with_config(c).await.unwrap();
    m.create("users").await.unwrap();
    m.set_value(
        "users",
        "nameless",
        Versioned::encode("user", 1, &json!({})).unwrap(),
    )
    .await
    .unwrap();
    match m.get_versioned::<User>("users", "nameless") {
        Err(Error::InvalidInput(InvalidInput::Undecodable { key, reason, .. })) => {
            assert_eq!(key, "nameless");
            assert!(reason.contains("without a name"), "{reason}");
        }
        other => panic!("expected the upcaster's failure, got {other:?}"),
    }
    assert!(matches!(
        m.get_versioned::<User>("users", "missing"),
        Err(Error::KeyNotFound { .. })
    ));
    m.close().await.unwrap();
}
