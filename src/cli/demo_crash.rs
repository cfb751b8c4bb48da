//! The demo's crash: a second store on [`MemStorage`] (an in-memory disk that knows which
//! bytes are durable), writers committing under `Durability::Always`, and power cut with
//! [`CrashMode::Torn`] while writes are in flight: unsynced writes are kept in part, the last
//! one torn at a random byte. The crash image is reopened and checked: every commit that was
//! acknowledged before the power loss must be there.

use super::output::CliResult;
use ctxlog::storage::{CrashMode, MemStorage};
use ctxlog::wal::TornTailReport;
use ctxlog::{create_manager_with_config, Config, ContextManager, Durability, Error};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WRITERS: usize = 4;
/// Most commits one writer makes.
const PER_WRITER: u64 = 1500;
/// Crash images tried before giving up on catching a write in flight.
const ATTEMPTS: u64 = 200;

/// What the crash showed.
#[derive(Debug)]
pub struct Crash {
    /// Crash images taken until one cut a write in half.
    pub attempts: u64,
    /// Commits submitted but not yet acknowledged when the power was cut.
    pub in_flight: u64,
    /// Commits acknowledged before the power was cut.
    pub acked: u64,
    /// What recovery cut off the end of the log.
    pub torn: Option<TornTailReport>,
    /// The last offset after recovery.
    pub last_offset: u64,
    /// Every acknowledged commit is in the recovered store, with its value.
    pub all_present: bool,
    /// Commits not yet acknowledged that survived all the same (allowed).
    pub unacked_survivors: u64,
}

impl Crash {
    /// As JSON.
    pub fn json(&self) -> Json {
        json!({
            "attempts": self.attempts,
            "in_flight": self.in_flight,
            "acknowledged": self.acked,
            "torn_tail": self.torn,
            "last_offset": self.last_offset,
            "all_acknowledged_present": self.all_present,
            "unacknowledged_survivors": self.unacked_survivors,
        })
    }
}

fn config(storage: &MemStorage) -> Config {
    let mut c = Config::new("/power-loss-demo");
    c.storage = Arc::new(storage.clone());
    c.durability = Durability::Always;
    c.segment_bytes = 256 * 1024;
    c.record_bytes_max = 64 * 1024;
    c.value_bytes_max = 32 * 1024;
    c
}

/// Acknowledged commits: key -> (offset, value).
type Acked = Mutex<BTreeMap<String, (u64, u64)>>;

async fn writer(
    m: ContextManager,
    w: usize,
    acked: Arc<Acked>,
    submitted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<(), Error> {
    for i in 0..PER_WRITER {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let key = format!("order-{w}-{i:05}");
        let value = (w as u64) << 32 | i;
        submitted.fetch_add(1, Ordering::SeqCst);
        let r = m.set("orders", &key, &value).await?;
        acked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (r.offset.0, value));
    }
    Ok(())
}

/// Runs the crash scenario, narrating through `say`.
pub async fn run(say: &dyn Fn(&str)) -> CliResult<Crash> {
    let mem = MemStorage::new();
    let m = create_manager_with_config(config(&mem)).await?;
    m.create("orders").await?;
    let acked: Arc<Acked> = Arc::default();
    let submitted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    say(&format!("   {WRITERS} writers commit orders (durability always) while the power is cut at a random instant"));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                m.clone(),
                w,
                Arc::clone(&acked),
                Arc::clone(&submitted),
                Arc::clone(&stop),
            ))
        })
        .collect();
    while acked.lock().unwrap_or_else(|e| e.into_inner()).len() < 200
        && !tasks.iter().all(|t| t.is_finished())
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut found = None;
    let mut attempts = 0;
    while found.is_none() && attempts < ATTEMPTS && !tasks.iter().all(|t| t.is_finished()) {
        attempts += 1;
        // Only what was acknowledged before the image is taken must survive: copy it first.
        let before = acked.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let sent = submitted.load(Ordering::SeqCst);
        let image = mem.crash_image(CrashMode::Torn(attempts * 7919));
        let reopened = create_manager_with_config(config(&image)).await?;
        if reopened.open_report().log.torn_tail.is_some() || attempts == ATTEMPTS {
            found = Some((before, sent, reopened));
        } else {
            reopened.close().await?;
            tokio::time::sleep(Duration::from_micros(300)).await;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await
            .map_err(|e| super::output::CliError::new(format!("writer task failed: {e}")))??;
    }
    m.close().await?;
    let (before, sent, reopened) = match found {
        Some(f) => f,
        None => {
            // The writers finished before a crash image caught a write in flight.
            let before = acked.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let image = mem.crash_image(CrashMode::Torn(1));
            let sent = submitted.load(Ordering::SeqCst);
            (
                before,
                sent,
                create_manager_with_config(config(&image)).await?,
            )
        }
    };
    let report = reopened.open_report().log.clone();
    let state = reopened.state();
    let orders = state.context("orders");
    let value_of = |k: &str| {
        orders
            .and_then(|c| c.get(k))
            .and_then(|v| v.decode::<u64>().ok())
    };
    let all_present = before.iter().all(|(k, (_, v))| value_of(k) == Some(*v));
    let recovered = orders.map_or(0, |c| c.len() as u64);
    let crash = Crash {
        attempts,
        in_flight: sent.saturating_sub(before.len() as u64),
        acked: before.len() as u64,
        torn: report.torn_tail.clone(),
        last_offset: report.last_offset,
        all_present,
        unacked_survivors: recovered.saturating_sub(before.len() as u64),
    };
    reopened.close().await?;
    say(&format!(
        "   power cut after {} acknowledged commits, with {} commits in flight (crash image #{})",
        crash.acked, crash.in_flight, crash.attempts
    ));
    match &crash.torn {
        Some(t) => say(&format!(
            "   reopen: a torn record at byte {} of {} was found and cut off ({} bytes dropped)",
            t.position,
            t.file.display(),
            t.bytes_dropped
        )),
        None => {
            say("   reopen: no write was cut in half this time (the log ended on a whole record)")
        }
    }
    say(&format!(
        "   the log now ends at offset {}; every acknowledged commit is there with its value: {}",
        crash.last_offset,
        if crash.all_present { "yes" } else { "NO" }
    ));
    if crash.unacked_survivors > 0 {
        say(&format!(
            "   {} {} written but not yet acknowledged survived too (allowed: never acknowledged, never promised)",
            crash.unacked_survivors,
            if crash.unacked_survivors == 1 { "commit" } else { "commits" }
        ));
    }
    Ok(crash)
}
