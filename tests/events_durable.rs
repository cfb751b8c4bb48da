//! Durable consumers: a named subscription resumes after its acknowledged offset, across
//! restarts and snapshots; acknowledgements are events in the log and never move a position
//! backwards or past the end of the log.

mod subscribe_support;

use ctxlog::error::{Error, InvalidInput};
use ctxlog::event::Event;
use ctxlog::manager::Filter;
use ctxlog::storage::MemStorage;
use ctxlog::{create_manager_with_config, Config, Offset};
use subscribe_support::{assert_same, expected, open_mem, take, Spec};

fn fs_config(dir: &std::path::Path) -> Config {
    let mut c = Config::new(dir);
    c.segment_bytes = 64 * 1024;
    c.record_bytes_max = 16 * 1024;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_consumer_resumes_after_its_acknowledged_offset_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let m = create_manager_with_config(fs_config(tmp.path()))
        .await
        .unwrap();
    m.create("orders").await.unwrap();
    for i in 0..9u32 {
        m.set("orders", &format!("o{i}"), &i).await.unwrap();
    }
    assert_eq!(m.last_offset(), Offset(10));
    assert_eq!(m.consumer_position("billing"), Offset::ZERO);

    // A new consumer starts at the beginning.
    let mut sub = m.subscribe_durable("billing", Filter::all()).unwrap();
    let first = take(&mut sub, 6).await;
    assert_eq!(first[0].offset, Offset::FIRST);
    let processed = first.last().unwrap().offset;
    assert_eq!(processed, Offset(6));
    let ack = m.ack_consumer("billing", processed).await.unwrap();
    assert_eq!(m.consumer_position("billing"), processed);
    // Positions never move backwards: an older acknowledgement is logged, and ignored.
    let stale = m.ack_consumer("billing", Offset(3)).await.unwrap();
    assert_eq!(m.consumer_position("billing"), processed);
    // Consumers are independent.
    m.ack_consumer("mailer", Offset(2)).await.unwrap();
    assert_eq!(m.consumer_position("mailer"), Offset(2));
    assert_eq!(m.consumer_position("billing"), processed);
    // Invalid names are refused, like recovery point labels.
    assert!(matches!(
        m.ack_consumer("", Offset(1)).await,
        Err(Error::InvalidInput(InvalidInput::RecoveryPointLabel { .. }))
    ));
    assert!(matches!(
        m.subscribe_durable("", Filter::all()),
        Err(Error::InvalidInput(_))
    ));
    drop(sub);
    m.set("orders", "late", &1u8).await.unwrap();
    let last_before_close = m.last_offset();
    m.close().await.unwrap();

    let m = create_manager_with_config(fs_config(tmp.path()))
        .await
        .unwrap();
    assert_eq!(
        m.consumer_position("billing"),
        processed,
        "survives a restart"
    );
    assert_eq!(m.consumer_position("mailer"), Offset(2));
    let mut sub = m.subscribe_durable("billing", Filter::all()).unwrap();
    let rest = take(&mut sub, (last_before_close.0 - processed.0) as usize).await;
    assert_eq!(
        rest[0].offset,
        processed.next(),
        "resumes right after the ack"
    );
    assert_same(
        "resumed billing",
        &rest,
        &expected(&m, processed.next(), &Spec::All).await,
    );
    // The acknowledgements are events in the log, the stale one included.
    let acks: Vec<(Offset, Event)> = m
        .events(Offset::FIRST)
        .await
        .unwrap()
        .into_iter()
        .flat_map(|c| {
            let offset = c.offset;
            c.events
                .into_iter()
                .filter(|e| e.kind() == "ConsumerAcked")
                .map(move |e| (offset, e))
        })
        .collect();
    let acked = |consumer: &str, offset: u64| Event::ConsumerAcked {
        consumer: consumer.into(),
        offset: Offset(offset),
    };
    assert_eq!(
        acks,
        [
            (ack.offset, acked("billing", 6)),
            (stale.offset, acked("billing", 3)),
            (stale.offset.next(), acked("mailer", 2)),
        ]
    );

    // A newer ack moves it on; it survives a snapshot too.
    let now = m.last_offset();
    m.ack_consumer("billing", now).await.unwrap();
    assert_eq!(m.consumer_position("billing"), now);
    let snap = m.snapshot_now().await.unwrap();
    m.close().await.unwrap();
    let m = create_manager_with_config(fs_config(tmp.path()))
        .await
        .unwrap();
    assert_eq!(m.open_report().snapshot, Some(snap));
    assert_eq!(m.open_report().replayed, 0);
    assert_eq!(m.consumer_position("billing"), now);
    let mut sub = m.subscribe_durable("billing", Filter::all()).unwrap();
    let next = take(&mut sub, 1).await;
    assert_eq!(next[0].offset, now.next(), "the ack commit itself");
    assert!(matches!(next[0].event, Event::ConsumerAcked { .. }));
    m.close().await.unwrap();
}

/// Acknowledging an offset the log has not reached would make the consumer skip commits that
/// do not exist yet the next time it subscribes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledging_past_the_end_is_refused() {
    let mem = MemStorage::new();
    let m = open_mem(&mem).await;
    m.create("c").await.unwrap();
    let last = m.last_offset();
    let result = m.ack_consumer("billing", Offset(last.0 + 100)).await;
    assert!(
        matches!(result, Err(Error::OffsetOutOfRange { .. })),
        "accepted an ack of an offset that does not exist: {result:?}"
    );
    // What would go wrong otherwise: the next commits never delivered to the consumer. With
    // the ack refused, the consumer (with no position yet) gets everything from the start.
    m.set("c", "k", &1u8).await.unwrap();
    let mut sub = m.subscribe_durable("billing", Filter::all()).unwrap();
    let got = take(&mut sub, 2).await;
    let offsets: Vec<Offset> = got.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, vec![last, last.next()]);
}
