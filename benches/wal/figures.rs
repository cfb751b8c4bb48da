//! What every benchmark measured: each `iter_custom` call (or bulk load) records a [`Call`];
//! the summary reduces the last [`SAMPLES`] calls of a benchmark to a [`Figure`].

use crate::SAMPLES;
use std::sync::Mutex;
use std::time::Duration;

/// One call of an `iter_custom` routine (or one bulk load).
#[derive(Debug, Clone, Default)]
pub(crate) struct Call {
    /// Operations done (syncs, commits, records).
    pub(crate) ops: u64,
    /// Payload (or raw) bytes written or read.
    pub(crate) bytes: u64,
    pub(crate) elapsed: Duration,
    /// `fdatasync`s and writes the log issued meanwhile.
    pub(crate) syncs: u64,
    pub(crate) writes: u64,
    /// The rate of the raw baseline run right next to this call on the same disk (syncs/s for
    /// the durable cases, bytes/s for the bulk load), and this call's rate divided by it.
    pub(crate) paired: Option<(f64, f64)>,
    /// For the durable cases: (WAL commits/s, baseline A syncs/s) of each pair of slices.
    pub(crate) slices: Vec<(f64, f64)>,
}

static CALLS: Mutex<Vec<(&'static str, Vec<Call>)>> = Mutex::new(Vec::new());

fn calls() -> std::sync::MutexGuard<'static, Vec<(&'static str, Vec<Call>)>> {
    CALLS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps what one call of benchmark `id` did.
pub(crate) fn record(id: &'static str, call: Call) {
    let mut calls = calls();
    match calls.iter_mut().find(|(name, _)| *name == id) {
        Some((_, v)) => v.push(call),
        None => calls.push((id, vec![call])),
    }
}

/// True if any benchmark recorded a call.
pub(crate) fn any() -> bool {
    !calls().is_empty()
}

/// The ids of the benchmarks that recorded calls, in the order they ran.
pub(crate) fn ids() -> Vec<&'static str> {
    calls().iter().map(|(id, _)| *id).collect()
}

/// A benchmark's figures over its measured samples: the last [`SAMPLES`] calls (criterion's
/// warm-up calls come before them).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Figure {
    /// Median over the samples of operations per second.
    pub(crate) ops_per_s: f64,
    /// Median over the samples of bytes per second.
    pub(crate) bytes_per_s: f64,
    /// Operations per `fdatasync` over the samples (`None` if none was counted).
    pub(crate) ops_per_sync: Option<f64>,
    /// Operations per write over the samples.
    pub(crate) ops_per_write: Option<f64>,
    /// Medians over the samples of the paired baseline's rate and of the ratio to it.
    pub(crate) paired: Option<(f64, f64)>,
    /// Over every slice pair of the samples: the median baseline rate and the median ratio.
    pub(crate) slices: Option<(f64, f64)>,
    /// Slice pairs behind `slices`.
    pub(crate) slice_count: usize,
    pub(crate) samples: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The figures of benchmark `id`, if it ran.
pub(crate) fn figure(id: &str) -> Option<Figure> {
    let calls = calls();
    let (_, all) = calls.iter().find(|(name, _)| *name == id)?;
    let measured = &all[all.len().saturating_sub(SAMPLES)..];
    let secs = |c: &Call| c.elapsed.as_secs_f64();
    let ops: u64 = measured.iter().map(|c| c.ops).sum();
    let syncs: u64 = measured.iter().map(|c| c.syncs).sum();
    let writes: u64 = measured.iter().map(|c| c.writes).sum();
    let per = |n: u64| (n > 0).then(|| ops as f64 / n as f64);
    let paired: Vec<(f64, f64)> = measured.iter().filter_map(|c| c.paired).collect();
    let slices: Vec<(f64, f64)> = measured.iter().flat_map(|c| c.slices.clone()).collect();
    Some(Figure {
        ops_per_s: median(measured.iter().map(|c| c.ops as f64 / secs(c)).collect()),
        bytes_per_s: median(measured.iter().map(|c| c.bytes as f64 / secs(c)).collect()),
        ops_per_sync: per(syncs),
        ops_per_write: per(writes),
        paired: (!paired.is_empty()).then(|| {
            (
                median(paired.iter().map(|p| p.0).collect()),
                median(paired.iter().map(|p| p.1).collect()),
            )
        }),
        slices: (!slices.is_empty()).then(|| {
            (
                median(slices.iter().map(|p| p.1).collect()),
                median(slices.iter().map(|p| p.0 / p.1).collect()),
            )
        }),
        slice_count: slices.len(),
        samples: measured.len(),
    })
}
