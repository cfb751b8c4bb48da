//! The machine, the disk and the versions, described for the results.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn cpu_model() -> String {
    read("/proc/cpuinfo")
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn mem_total_gib() -> f64 {
    read("/proc/meminfo")
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0)
}

/// (device, fs type, mount point, options) of the mount holding `path`.
pub fn mount_of(path: &Path) -> Option<(String, String, String, String)> {
    let path = path.canonicalize().ok()?;
    let mounts = read("/proc/self/mounts")?;
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| {
                (
                    f[0].to_string(),
                    f[2].to_string(),
                    f[1].to_string(),
                    f[3].to_string(),
                )
            })
        })
        .filter(|(_, _, at, _)| path.starts_with(at))
        .max_by_key(|(_, _, at, _)| at.len())
}

/// What sysfs says about a block device (`/dev/vda` -> `/sys/block/vda`).
fn block_device(dev: &str) -> String {
    let name = dev.trim_start_matches("/dev/");
    // A partition's queue lives with its disk.
    let mut base = name.to_string();
    if !Path::new(&format!("/sys/block/{base}")).exists() {
        base = base
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .to_string();
        if base.ends_with('p') && !Path::new(&format!("/sys/block/{base}")).exists() {
            base.pop();
        }
    }
    let sys = format!("/sys/block/{base}");
    if !Path::new(&sys).exists() {
        return format!("{dev} (no sysfs entry)");
    }
    let mut parts = Vec::new();
    if let Some(size) = read(format!("{sys}/size")).and_then(|s| s.parse::<u64>().ok()) {
        parts.push(format!("{:.0} GB", size as f64 * 512.0 / 1e9));
    }
    if let Ok(driver) = std::fs::read_link(format!("{sys}/device/driver")) {
        if let Some(d) = driver.file_name() {
            parts.push(format!("driver {}", d.to_string_lossy()));
        }
    }
    if let Some(m) = read(format!("{sys}/device/model")) {
        parts.push(format!("model {m}"));
    }
    if let Some(r) = read(format!("{sys}/queue/rotational")) {
        parts.push(format!("rotational={r}"));
    }
    if let Some(w) = read(format!("{sys}/queue/write_cache")) {
        parts.push(format!("write cache: {w}"));
    }
    if let Some(s) = read(format!("{sys}/queue/scheduler")) {
        parts.push(format!("scheduler {s}"));
    }
    format!("{dev}: {}", parts.join(", "))
}

fn command_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Versions of the peers as resolved in this crate's Cargo.lock.
fn crate_versions() -> String {
    let lock = include_str!("../Cargo.lock");
    let wanted = [
        "raft-engine",
        "okaywal",
        "rocksdb",
        "librocksdb-sys",
        "fjall",
        "redb",
        "rusqlite",
        "libsqlite3-sys",
        "sled",
        "commitlog",
    ];
    let mut found = Vec::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_string());
        } else if let Some(v) = line.strip_prefix("version = ") {
            if let Some(n) = name.take() {
                if wanted.contains(&n.as_str()) {
                    found.push(format!("{n} {}", v.trim_matches('"')));
                }
            }
        }
    }
    found.join(", ")
}

/// The RocksDB the `rocksdb` peer links (Debian's, from its header).
fn librocksdb_version() -> String {
    let Some(h) = read("/usr/include/rocksdb/version.h") else {
        return "unknown".into();
    };
    let get = |k: &str| {
        h.lines()
            .find(|l| l.contains(&format!("#define {k} ")))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("?")
            .to_string()
    };
    format!(
        "{}.{}.{}",
        get("ROCKSDB_MAJOR"),
        get("ROCKSDB_MINOR"),
        get("ROCKSDB_PATCH")
    )
}

/// The ctxlog revision measured: HEAD of the repository, and whether `src/` or `log-format/`
/// differ from it (others may be editing the working tree).
fn ctxlog_revision() -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let head = command_line("git", &["-C", root, "log", "-1", "--format=%h %s"])
        .unwrap_or_else(|| "unknown".into());
    let dirty = command_line(
        "git",
        &[
            "-C",
            root,
            "status",
            "--porcelain",
            "--",
            "src",
            "log-format",
            "Cargo.toml",
        ],
    )
    .map_or("?".into(), |s| {
        if s.is_empty() {
            "clean".to_string()
        } else {
            format!("{} changed files", s.lines().count())
        }
    });
    let head: String = head.chars().take(90).collect();
    format!("ctxlog at `{head}` (src/ vs HEAD when the run started: {dirty})")
}

/// A Markdown list describing the machine, the disk under `data` and the versions.
pub fn describe(data: &Path) -> String {
    let mut s = String::new();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(
        s,
        "- CPU: {} ({cores} cores available), memory {:.1} GiB, kernel {}",
        cpu_model(),
        mem_total_gib(),
        read("/proc/sys/kernel/osrelease").unwrap_or_default()
    );
    match mount_of(data) {
        Some((dev, fs, at, opts)) => {
            let _ = writeln!(
                s,
                "- data: `{}` on {fs} mounted at `{at}` ({opts})",
                data.display()
            );
            let _ = writeln!(s, "- device: {}", block_device(&dev));
        }
        None => {
            let _ = writeln!(s, "- data: `{}` (mount unknown)", data.display());
        }
    }
    let _ = writeln!(s, "- {}", ctxlog_revision());
    let _ = writeln!(
        s,
        "- {}; peers: {}; librocksdb {} (Debian, dynamically linked); SQLite {}",
        command_line("rustc", &["-V"]).unwrap_or_else(|| "rustc ?".into()),
        crate_versions(),
        librocksdb_version(),
        rusqlite::version()
    );
    s
}
