//! JSON Schema per context: a commit that would break it is refused before anything is written;
//! attaching, changing and removing a schema are events; the schema survives reopen, snapshots
//! and comes back with a restore.

use ctxlog::error::{Error, InvalidInput};
use ctxlog::event::Event;
use ctxlog::{create_manager_with_config, Config, ContextManager, Offset, Update};
use serde_json::{json, Value as Json};
use std::path::Path;

fn config(dir: &Path) -> Config {
    let mut c = Config::new(dir);
    c.segment_bytes = 64 * 1024;
    c.record_bytes_max = 16 * 1024;
    c
}

async fn open(dir: &Path) -> ContextManager {
    create_manager_with_config(config(dir))
        .await
        .expect("open the store")
}

fn person_schema() -> Json {
    json!({
        "type": "object",
        "properties": {"age": {"type": "integer", "minimum": 0}},
        "required": ["name"]
    })
}

/// A context's values, decoded as JSON, in key order.
fn values(m: &ContextManager, context: &str) -> Vec<(String, Json)> {
    m.get(context)
        .expect("context exists")
        .values()
        .map(|(k, v)| (k.to_string(), v.decode::<Json>().expect("JSON value")))
        .collect()
}

/// Asserts a schema violation naming `context`, `key` and `rule`; returns the message.
#[track_caller]
fn assert_violation(
    result: ctxlog::Result<ctxlog::Receipt>,
    context: &str,
    key: &str,
    rule: &str,
) -> String {
    match result {
        Err(Error::SchemaViolation {
            context: c,
            key: k,
            rule: r,
            message,
        }) => {
            assert_eq!(
                (c.as_str(), k.as_str(), r.as_str()),
                (context, key, rule),
                "{message}"
            );
            assert!(!message.is_empty());
            message
        }
        other => panic!("expected a schema violation of {context}/{key} ({rule}), got {other:?}"),
    }
}

/// Everything a refused commit must leave as it was.
#[derive(Debug, PartialEq)]
struct Before {
    offset: Offset,
    events: Vec<ctxlog::manager::CommitRecord>,
    state: ctxlog::state::State,
}

async fn before(m: &ContextManager) -> Before {
    Before {
        offset: m.last_offset(),
        events: m.events(Offset::FIRST).await.unwrap(),
        state: (*m.state()).clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_breaks_the_schema_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let m = open(tmp.path()).await;
    m.create("people").await.unwrap();
    m.create("staff").await.unwrap();
    m.create("free").await.unwrap();
    m.update(
        Update::new()
            .set("people", "name", "Ada")
            .unwrap()
            .set("people", "age", &36u32)
            .unwrap()
            .set("staff", "name", "Grace")
            .unwrap(),
    )
    .await
    .unwrap();
    let attached = m.attach_schema("people", &person_schema()).await.unwrap();
    m.attach_schema("staff", &person_schema()).await.unwrap();
    assert_eq!(
        attached.versions.get("people"),
        Some(&attached.offset),
        "attaching changes the context's version"
    );
    assert_eq!(
        m.get("people")
            .unwrap()
            .schema()
            .map(|s| serde_json::from_str::<Json>(s).unwrap()),
        Some(person_schema())
    );
    // Valid commits go through.
    m.set("people", "age", &37u32).await.unwrap();
    m.set("people", "nickname", "Countess").await.unwrap();
    m.set("people", "age", &0u32).await.unwrap();

    let was = before(&m).await;
    // Wrong type.
    let msg = assert_violation(m.set("people", "age", "old").await, "people", "age", "type");
    assert!(msg.contains("integer"), "{msg}");
    // Below the minimum.
    assert_violation(
        m.set("people", "age", &-1i32).await,
        "people",
        "age",
        "minimum",
    );
    // Removing a required key: the violation is the whole object's (key ""), and the message
    // names the missing key.
    let msg = assert_violation(m.remove("people", "name").await, "people", "", "required");
    assert!(msg.contains("name"), "{msg}");
    // A commit that sets one valid value and breaks another key of the same context.
    assert_violation(
        m.update(
            Update::new()
                .set("people", "nickname", "Ada")
                .unwrap()
                .set("people", "age", &-5i64)
                .unwrap(),
        )
        .await,
        "people",
        "age",
        "minimum",
    );
    // A multi-context commit where only one context breaks its schema: none of it is written.
    assert_violation(
        m.update(
            Update::new()
                .set("people", "age", &40u32)
                .unwrap()
                .set("free", "anything", "goes")
                .unwrap()
                .remove("staff", "name"),
        )
        .await,
        "staff",
        "",
        "required",
    );
    // An expected version does not get a broken commit through either.
    let v = m.get("people").unwrap().version();
    assert_violation(
        m.update(
            Update::new()
                .set("people", "age", &1.5f64)
                .unwrap()
                .expect("people", v),
        )
        .await,
        "people",
        "age",
        "type",
    );
    assert_eq!(
        before(&m).await,
        was,
        "refused commits leave state and log untouched"
    );
    assert_eq!(m.get_as::<u32>("people", "age").unwrap(), 0);
    assert!(m.get("free").unwrap().get("anything").is_none());
    assert_eq!(m.get_as::<String>("staff", "name").unwrap(), "Grace");

    // A context without a schema takes anything; deleting a governed context is allowed.
    let next = m.set("free", "age", "old").await.unwrap();
    assert_eq!(next.offset, was.offset.next(), "refusals took no offset");
    m.delete("staff").await.unwrap();

    // The refusals survive a restart as nothing at all.
    let people = values(&m, "people");
    let state = (*m.state()).clone();
    m.close().await.unwrap();
    let m = open(tmp.path()).await;
    assert_eq!(*m.state(), state, "reopen rebuilds exactly the same state");
    assert_eq!(values(&m, "people"), people);
    // And the schema is enforced after the restart.
    assert_violation(m.set("people", "age", "old").await, "people", "age", "type");
    m.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attaching_is_checked_and_attach_change_remove_are_events() {
    let tmp = tempfile::tempdir().unwrap();
    let m = open(tmp.path()).await;
    m.create("people").await.unwrap();
    m.set("people", "age", &-3i32).await.unwrap();

    // The current state breaks it: refused, nothing written.
    let was = before(&m).await;
    assert_violation(
        m.attach_schema("people", &person_schema()).await,
        "people",
        "",
        "required",
    );
    m.set("people", "name", "Ada").await.unwrap();
    let was_named = before(&m).await;
    assert_violation(
        m.attach_schema("people", &person_schema()).await,
        "people",
        "age",
        "minimum",
    );
    assert_eq!(before(&m).await, was_named);
    assert_eq!(was.offset.next(), was_named.offset);

    // Not a schema: refused as invalid input, whatever the state.
    for bad in [
        json!({"type": 12}),
        json!({"minimum": "zero"}),
        json!({"type": "integer-ish"}),
        json!([1, 2]),
        json!({"required": "name"}),
    ] {
        match m.attach_schema("people", &bad).await {
            Err(Error::InvalidInput(InvalidInput::Schema { context, reason })) => {
                assert_eq!(context, "people");
                assert!(!reason.is_empty());
            }
            other => panic!("{bad} was taken as a schema: {other:?}"),
        }
    }
    // Not JSON at all (attach_schema takes a parsed value; the compiler takes text).
    assert!(matches!(
        ctxlog::schema::compile("people", "{\"type\": "),
        Err(InvalidInput::Schema { .. })
    ));
    assert!(ctxlog::schema::compile("people", "{\"type\": \"object\"}").is_ok());
    // No such context.
    assert!(matches!(
        m.attach_schema("nobody", &json!({})).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        m.remove_schema("nobody").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        m.attach_schema("", &json!({})).await,
        Err(Error::InvalidInput(InvalidInput::ContextName { .. }))
    ));
    assert_eq!(
        before(&m).await,
        was_named,
        "refused attaches write nothing"
    );

    m.set("people", "age", &36u32).await.unwrap();
    let a1 = m.attach_schema("people", &person_schema()).await.unwrap();
    // Change: a stricter schema replaces the first.
    let stricter = json!({
        "type": "object",
        "properties": {"age": {"type": "integer", "minimum": 0, "maximum": 150}},
        "required": ["name", "age"]
    });
    let a2 = m.attach_schema("people", &stricter).await.unwrap();
    assert_violation(
        m.set("people", "age", &200u32).await,
        "people",
        "age",
        "maximum",
    );
    assert_violation(m.remove("people", "age").await, "people", "", "required");
    // Removed: the refused commits now go through.
    let r = m.remove_schema("people").await.unwrap();
    assert!(m.get("people").unwrap().schema().is_none());
    m.set("people", "age", "old").await.unwrap();
    m.remove("people", "name").await.unwrap();

    let history = m.history("people").await.unwrap();
    let schema_events: Vec<(Offset, Event)> = history
        .into_iter()
        .filter(|h| h.event.kind().starts_with("Schema"))
        .map(|h| (h.offset, h.event))
        .collect();
    assert_eq!(
        schema_events,
        [
            (
                a1.offset,
                Event::SchemaAttached {
                    context: "people".into(),
                    schema: person_schema().to_string()
                }
            ),
            (
                a2.offset,
                Event::SchemaAttached {
                    context: "people".into(),
                    schema: stricter.to_string()
                }
            ),
            (
                r.offset,
                Event::SchemaRemoved {
                    context: "people".into()
                }
            ),
        ]
    );
    m.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_survives_reopen_and_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let m = open(tmp.path()).await;
    m.create("people").await.unwrap();
    m.set("people", "name", "Ada").await.unwrap();
    m.attach_schema("people", &person_schema()).await.unwrap();
    m.close().await.unwrap();

    // From the log.
    let m = open(tmp.path()).await;
    assert_eq!(m.open_report().snapshot, None);
    assert!(m.get("people").unwrap().schema().is_some());
    assert_violation(
        m.set("people", "age", &-1i8).await,
        "people",
        "age",
        "minimum",
    );
    let snap = m.snapshot_now().await.unwrap();
    let state = (*m.state()).clone();
    m.close().await.unwrap();

    // From the snapshot alone.
    let m = open(tmp.path()).await;
    assert_eq!(m.open_report().snapshot, Some(snap));
    assert_eq!(m.open_report().replayed, 0);
    assert_eq!(*m.state(), state);
    assert_eq!(
        m.get("people")
            .unwrap()
            .schema()
            .map(|s| serde_json::from_str::<Json>(s).unwrap()),
        Some(person_schema())
    );
    assert_violation(
        m.set("people", "age", &-1i8).await,
        "people",
        "age",
        "minimum",
    );
    assert_violation(m.remove("people", "name").await, "people", "", "required");
    m.set("people", "age", &1u8).await.unwrap();
    // A point-in-time read from the snapshot carries it as well.
    let at = m.state_at(snap).await.unwrap();
    assert!(at.context("people").unwrap().schema().is_some());
    m.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_brings_back_the_schema_of_the_restored_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let m = open(tmp.path()).await;
    m.create("people").await.unwrap();
    m.set("people", "name", "Ada").await.unwrap();
    m.create_recovery_point("no-schema").await.unwrap();
    m.attach_schema("people", &person_schema()).await.unwrap();
    m.set("people", "age", &36u32).await.unwrap();
    m.create_recovery_point("schema-1").await.unwrap();
    m.snapshot_now().await.unwrap();
    m.remove_schema("people").await.unwrap();
    m.set("people", "age", "old").await.unwrap();

    // Back to "schema-1": values and schema as they were, and enforced again.
    let restored = m.restore("schema-1").await.unwrap();
    let people = m.get("people").unwrap();
    assert_eq!(
        people
            .schema()
            .map(|s| serde_json::from_str::<Json>(s).unwrap()),
        Some(person_schema())
    );
    assert_eq!(m.get_as::<u32>("people", "age").unwrap(), 36);
    assert_violation(m.set("people", "age", "old").await, "people", "age", "type");
    let last = m.history("people").await.unwrap().pop().expect("history");
    assert_eq!(last.offset, restored.offset);
    match last.event {
        Event::ContextRestored {
            image: Some(image),
            from_offset,
            ..
        } => {
            assert_eq!(from_offset, m.recovery_points()["schema-1"]);
            assert_eq!(image.schema, Some(person_schema().to_string()));
        }
        other => panic!("expected a restore with an image, got {other:?}"),
    }

    // A restore that changes only the schema is still a restore.
    m.remove_schema("people").await.unwrap();
    m.restore("schema-1").await.unwrap();
    assert!(m.get("people").unwrap().schema().is_some());

    // Back to before any schema: none, and anything goes.
    m.restore("no-schema").await.unwrap();
    assert!(m.get("people").unwrap().schema().is_none());
    m.set("people", "age", "old").await.unwrap();

    // Survives a restart (replayed through the snapshot taken with the schema on).
    let state = (*m.state()).clone();
    m.close().await.unwrap();
    let m = open(tmp.path()).await;
    assert!(m.open_report().snapshot.is_some());
    assert_eq!(*m.state(), state);
    m.restore("schema-1").await.unwrap();
    assert_violation(m.remove("people", "name").await, "people", "", "required");
    m.close().await.unwrap();
}
