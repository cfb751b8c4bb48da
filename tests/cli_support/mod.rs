//! Shared by the `cli_*` tests: a store in a temporary directory, driven through the real
//! `ctxlog` binary.

#![allow(dead_code)]

use serde_json::Value as Json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Small segments keep the debug binary's open and verify fast.
pub const SEGMENT_BYTES: &str = "1048576";

/// A store directory and the binary that drives it.
pub struct Store {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    /// `CTXLOG_SEGMENT_BYTES` for every command.
    pub segment_bytes: String,
}

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ctxlog"));
    c.env_remove("CTXLOG_DIR")
        .env("CTXLOG_SEGMENT_BYTES", SEGMENT_BYTES)
        .stdin(Stdio::null());
    c
}

impl Store {
    pub fn new() -> Store {
        Store::with_segment_bytes(SEGMENT_BYTES)
    }

    pub fn with_segment_bytes(bytes: &str) -> Store {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        Store {
            tmp,
            dir,
            segment_bytes: bytes.to_string(),
        }
    }

    /// `ctxlog --dir DIR ARGS...`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = bin();
        c.env("CTXLOG_SEGMENT_BYTES", &self.segment_bytes)
            .arg("--dir")
            .arg(&self.dir)
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs, expects exit 0, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "ctxlog {args:?} failed ({:?}): {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs with --json, expects exit 0, parses stdout as one JSON document.
    pub fn json(&self, args: &[&str]) -> Json {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("ctxlog --json {args:?} printed no JSON ({e}): {out}"))
    }

    /// Runs, expects exit `code` and exactly one line on stderr; returns that line.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let o = self.run(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(
            o.status.code(),
            Some(code),
            "ctxlog {args:?}: stdout {} stderr {err}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert_eq!(
            err.lines().count(),
            1,
            "ctxlog {args:?}: stderr not one line: {err:?}"
        );
        err
    }

    /// `import` with `input` on stdin.
    pub fn import(&self, input: &str) -> Output {
        let mut child = self
            .cmd(&["import"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// The only segment file.
    pub fn first_segment(&self) -> PathBuf {
        self.dir.join("wal").join(format!("{:020}.seg", 1))
    }
}

/// Flips one byte of a file.
pub fn flip_byte(path: &Path, pos: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[pos as usize] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

/// Parses JSON Lines.
pub fn json_lines(s: &str) -> Vec<Json> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}
