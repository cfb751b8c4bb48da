//! Shared by the `reliability_*` tests: a seeded generator, the run-length knobs
//! (`CTXLOG_LONG`, `CTXLOG_SEED`, `CTXLOG_SEEDS`), figure reporting, a seed loop that names the
//! failing seed, store configurations on `MemStorage`, and a state comparison that says what
//! differs instead of printing two whole states.
//!
//! Figures are printed to stderr as `RELIABILITY-FIGURE <test> <name>=<value>` lines, so that a
//! run with `--nocapture` can be grepped for the numbers `docs/RELIABILITY.md` publishes.

#![allow(dead_code)]

pub mod damage;
#[path = "../state_diff/mod.rs"]
mod state_diff;
pub use state_diff::state_diff;
pub mod model;

use ctxlog::state::State;
use ctxlog::storage::MemStorage;
use ctxlog::{Config, Offset};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

/// The store directory inside a `MemStorage`.
pub const DIR: &str = "store";

/// SplitMix64: a tiny deterministic generator, one per seed.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Decorrelate neighbouring seeds.
        let mut r = Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B);
        r.next();
        r
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// A number from the environment.
pub fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
    )
}

/// `CTXLOG_LONG=1`: the long mode.
pub fn long() -> bool {
    std::env::var("CTXLOG_LONG").is_ok_and(|v| v == "1")
}

/// The seeds to run: `CTXLOG_SEED=n` alone, else `0..CTXLOG_SEEDS`, else `0..normal` (or
/// `0..long_n` in the long mode).
pub fn seeds(normal: u64, long_n: u64) -> std::ops::Range<u64> {
    if let Some(seed) = env_u64("CTXLOG_SEED") {
        return seed..seed + 1;
    }
    let n = env_u64("CTXLOG_SEEDS").unwrap_or(if long() { long_n } else { normal });
    0..n
}

/// True when only one seed was asked for (skip the "every situation happened" checks).
pub fn single_seed() -> bool {
    env_u64("CTXLOG_SEED").is_some()
}

/// Prints one figure for `docs/RELIABILITY.md`.
pub fn figure(test: &str, name: &str, value: impl std::fmt::Display) {
    eprintln!("RELIABILITY-FIGURE {test} {name}={value}");
}

/// Runs `f` once per seed; on a panic, says which seed failed and how to run it alone, then
/// lets the panic go on.
pub fn for_each_seed(test: &str, seeds: std::ops::Range<u64>, mut f: impl FnMut(u64)) {
    for seed in seeds {
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| f(seed))) {
            eprintln!(
                "\n*** {test}: seed {seed} failed. Rerun it alone with:\n    \
                 CTXLOG_SEED={seed} cargo test --test {test} -- --nocapture\n"
            );
            std::panic::resume_unwind(panic);
        }
    }
}

/// A multi-thread runtime with two workers, like the machine the figures were measured on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A store on `mem` with 64 KiB segments and no automatic snapshot.
pub fn mem_config(mem: &MemStorage) -> Config {
    let mut c = Config::new(DIR);
    c.storage = Arc::new(mem.clone());
    c.segment_bytes = 64 * 1024;
    c.record_bytes_max = 16 * 1024;
    c.snapshot_every_commits = None;
    c.snapshot_every_bytes = None;
    c
}

/// A store on real files in `dir` with 64 KiB segments.
pub fn fs_config(dir: &std::path::Path) -> Config {
    let mut cfg = Config::new(dir);
    cfg.segment_bytes = 64 * 1024;
    cfg.record_bytes_max = 16 * 1024;
    cfg
}

pub fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Set in the environment of a re-executed test binary: `mode:dir`, what its probe test does.
pub const PROBE_ENV: &str = "CTXLOG_RELIABILITY_PROBE";

/// Runs this test binary again, only its test `test`, with `PROBE_ENV` set to `mode:dir`;
/// as user `nobody` (uid 65534, through `setpriv`) if asked. Returns the lines it printed
/// after `PROBE `.
pub fn run_probe(test: &str, mode: &str, dir: &std::path::Path, as_nobody: bool) -> Vec<String> {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = std::process::Command::new(if as_nobody {
        "setpriv".as_ref()
    } else {
        exe.as_os_str()
    });
    if as_nobody {
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&exe);
    }
    let out = cmd
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(PROBE_ENV, format!("{mode}:{}", dir.display()))
        .output()
        .expect("run the probe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.find("PROBE ").map(|i| l[i + 6..].to_string()))
        .collect();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !lines.is_empty(),
        "the probe printed nothing: {stdout} {stderr}"
    );
    lines
}

/// A result as one short line: `ok`, or the error's variant with its operation and OS error
/// kind where it has them.
pub fn describe(r: &ctxlog::Result<()>) -> String {
    use ctxlog::error::{Error, RecoveryError};
    use ctxlog::wal::WalError;
    match r {
        Ok(()) => "ok".to_string(),
        Err(Error::Locked { holder, .. }) => {
            format!("Locked by {}", holder.clone().unwrap_or_default().trim())
        }
        Err(Error::Persistence(WalError::Io { op, source, .. })) => {
            format!("Persistence(Io) {op} {:?}", source.kind())
        }
        Err(Error::Persistence(WalError::Poisoned { op, .. })) => {
            format!("Persistence(Poisoned) {op}")
        }
        Err(Error::Recovery(RecoveryError::SnapshotIo { op, source, .. })) => {
            format!("Recovery(SnapshotIo) {op} {:?}", source.kind())
        }
        Err(e) => format!("other {e:?}"),
    }
}

/// Panics with what differs.
#[track_caller]
pub fn assert_same_state(a: &State, b: &State, what: &str) {
    if let Some(d) = state_diff(a, b) {
        panic!("{what}: states differ: {d}");
    }
}

/// `Offset(n)`.
pub fn off(n: u64) -> Offset {
    Offset(n)
}

/// Asserts that `$e` matches the pattern (with an optional guard), printing the value if not.
#[macro_export]
macro_rules! assert_matches {
    ($e:expr, $p:pat $(if $g:expr)?) => {{
        let value = &$e;
        assert!(matches!(value, $p $(if $g)?), "{value:?} does not match {}", stringify!($p));
    }};
    ($e:expr, $p:pat $(if $g:expr)?, $($msg:tt)+) => {{
        let value = &$e;
        let ok = matches!(value, $p $(if $g)?);
        assert!(ok, "{}: {value:?} does not match {}", format!($($msg)+), stringify!($p));
    }};
}
