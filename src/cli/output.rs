//! Output: plain text or JSON, errors and exit codes, values shown as JSON, times, progress.

use ctxlog::event::{Event, Labels};
use ctxlog::model::Value;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Map, Value as Json};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Exit code of an error.
pub const EXIT_ERROR: i32 = 1;
/// Exit code of corruption found.
pub const EXIT_CORRUPT: i32 = 3;

/// A failed command: its exit code and the one line printed on stderr.
#[derive(Debug)]
pub struct CliError {
    /// 1 (error) or 3 (corruption).
    pub code: i32,
    /// What was wrong.
    pub msg: String,
}

/// The result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    /// An error, exit code 1.
    pub fn new(msg: impl Into<String>) -> CliError {
        CliError {
            code: EXIT_ERROR,
            msg: msg.into(),
        }
    }

    /// Corruption found, exit code 3.
    pub fn corrupt(msg: impl Into<String>) -> CliError {
        CliError {
            code: EXIT_CORRUPT,
            msg: msg.into(),
        }
    }

    /// Exit code only: the details were printed already.
    pub fn silent(code: i32) -> CliError {
        CliError {
            code,
            msg: String::new(),
        }
    }
}

impl From<ctxlog::Error> for CliError {
    fn from(e: ctxlog::Error) -> CliError {
        CliError {
            code: if e.is_corruption() {
                EXIT_CORRUPT
            } else {
                EXIT_ERROR
            },
            msg: e.to_string(),
        }
    }
}

impl From<ctxlog::error::InvalidInput> for CliError {
    fn from(e: ctxlog::error::InvalidInput) -> CliError {
        CliError::new(e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        CliError::new(e.to_string())
    }
}

/// Where results go: plain text for people or JSON for scripts.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// `--json`.
    pub json: bool,
}

impl Out {
    /// Prints `value` as JSON with --json, else the plain text `plain()` makes.
    pub fn emit(&self, value: &Json, plain: impl FnOnce() -> String) {
        if self.json {
            println_flush(&value.to_string());
        } else {
            let text = plain();
            if !text.is_empty() {
                println_flush(text.trim_end_matches('\n'));
            }
        }
    }

    /// True when progress bars may be drawn: stdout is a terminal and output is not JSON.
    pub fn progress_allowed(&self) -> bool {
        !self.json && std::io::stdout().is_terminal()
    }
}

/// Prints one line on stdout and flushes it (a closed pipe ends the process quietly).
pub fn println_flush(line: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
        std::process::exit(0);
    }
}

/// A stored value as JSON (values that are not JSON-shaped MessagePack are shown as
/// `{"$msgpack": "<hex>"}`).
pub fn value_json(v: &Value) -> Json {
    v.decode::<Json>().unwrap_or_else(|_| {
        let hex: String = v.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        json!({ "$msgpack": hex })
    })
}

/// MessagePack bytes (as events carry them) as JSON.
pub fn bytes_json(b: &[u8]) -> Json {
    value_json(&Value::from_msgpack(b.to_vec()))
}

/// A value given on the command line: JSON if it parses, else the string itself.
pub fn parse_value(s: &str) -> Json {
    serde_json::from_str(s).unwrap_or_else(|_| Json::String(s.to_string()))
}

/// Encodes a JSON value as stored MessagePack.
pub fn encode_value(context: &str, key: &str, v: &Json) -> CliResult<Value> {
    Value::encode(v).map_err(|e| {
        CliError::new(format!(
            "value for {context:?}/{key:?} cannot be encoded: {e}"
        ))
    })
}

/// Labels as a JSON object.
pub fn labels_json(labels: &Labels) -> Json {
    Json::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

/// A JSON value on one line, for plain output.
pub fn compact(v: &Json) -> String {
    v.to_string()
}

/// Milliseconds since the epoch as an RFC 3339 UTC time (`2024-05-01T12:00:00.000Z`).
pub fn fmt_time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Bytes for people.
pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// An event as JSON: `{"event": kind, "context": .., ...}` with values decoded.
pub fn event_json(e: &Event) -> Json {
    let mut o = Map::new();
    o.insert("event".into(), Json::String(e.kind().into()));
    let body = match e {
        Event::ContextCreated { context, labels } => {
            json!({ "context": context, "labels": labels_json(labels) })
        }
        Event::ValueSet {
            context,
            key,
            value,
        } => json!({ "context": context, "key": key, "value": bytes_json(value) }),
        Event::ValueRemoved { context, key } => json!({ "context": context, "key": key }),
        Event::MetadataChanged {
            context,
            set,
            removed,
        } => json!({ "context": context, "set": labels_json(set), "removed": removed }),
        Event::ContextDeleted { context }
        | Event::Activated { context }
        | Event::Deactivated { context } => json!({ "context": context }),
        Event::ContextRestored {
            context,
            from_offset,
            image,
        } => json!({
            "context": context,
            "from_offset": from_offset.0,
            "image": image.as_ref().map(|i| json!({
                "values": i.values.iter().map(|(k, v)| (k.clone(), bytes_json(v))).collect::<Map<_, _>>(),
                "labels": labels_json(&i.labels),
            })),
        }),
        Event::Switched { from, to } => json!({ "from": from, "to": to }),
        Event::DefaultChanged { context } => json!({ "context": context }),
        Event::RecoveryPointCreated { label } => json!({ "label": label }),
        Event::Compacted { before } => json!({ "before": before.0 }),
        // Events this CLI does not know by name (added by a newer engine): their own fields.
        #[allow(unreachable_patterns)]
        other => serde_json::to_value(other)
            .ok()
            .and_then(|v| match v {
                Json::Object(m) => m.into_iter().next().map(|(_, fields)| fields),
                _ => None,
            })
            .unwrap_or(Json::Null),
    };
    if let Json::Object(b) = body {
        o.extend(b);
    }
    Json::Object(o)
}

/// An event on one line, for plain output.
pub fn event_text(e: &Event) -> String {
    match e {
        Event::ContextCreated { context, labels } if labels.is_empty() => {
            format!("create {context}")
        }
        Event::ContextCreated { context, labels } => {
            format!("create {context} labels {}", compact(&labels_json(labels)))
        }
        Event::ValueSet {
            context,
            key,
            value,
        } => format!("set {context}/{key} = {}", compact(&bytes_json(value))),
        Event::ValueRemoved { context, key } => format!("rm {context}/{key}"),
        Event::MetadataChanged {
            context,
            set,
            removed,
        } => {
            let mut s = format!("meta {context}");
            if !set.is_empty() {
                s += &format!(" set {}", compact(&labels_json(set)));
            }
            if !removed.is_empty() {
                s += &format!(" removed {}", removed.join(","));
            }
            s
        }
        Event::ContextDeleted { context } => format!("delete {context}"),
        Event::ContextRestored {
            context,
            from_offset,
            image: Some(i),
        } => format!(
            "restore {context} to offset {from_offset} ({} keys)",
            i.values.len()
        ),
        Event::ContextRestored {
            context,
            from_offset,
            image: None,
        } => format!("restore {context} to offset {from_offset} (did not exist: deleted)"),
        Event::Activated { context } => format!("activate {context}"),
        Event::Deactivated { context } => format!("deactivate {context}"),
        Event::Switched { from: Some(f), to } => format!("switch {f} -> {to}"),
        Event::Switched { from: None, to } => format!("switch -> {to}"),
        Event::DefaultChanged { context: Some(c) } => format!("default {c}"),
        Event::DefaultChanged { context: None } => "default cleared".into(),
        Event::RecoveryPointCreated { label } => format!("point {label}"),
        Event::Compacted { before } => format!("compacted before offset {before}"),
        #[allow(unreachable_patterns)]
        other => {
            let mut fields = event_json(other);
            if let Json::Object(m) = &mut fields {
                m.remove("event");
            }
            format!("{} {}", other.kind(), compact(&fields))
        }
    }
}

/// A progress bar that appears only once its work has taken a second, and never when
/// progress is not allowed (stdout not a terminal, or --json). Drawn on stderr.
#[derive(Debug)]
pub struct Progress {
    allowed: bool,
    started: Instant,
    label: &'static str,
    total: Option<u64>,
    pos: u64,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A progress bar for `total` units (`None`: a spinner with a count).
    pub fn new(out: Out, label: &'static str, total: Option<u64>) -> Progress {
        Progress {
            allowed: out.progress_allowed(),
            started: Instant::now(),
            label,
            total,
            pos: 0,
            bar: None,
        }
    }

    /// Adds `n` units done.
    pub fn inc(&mut self, n: u64) {
        self.pos += n;
        match &self.bar {
            Some(bar) => bar.set_position(self.pos),
            None if self.allowed && self.started.elapsed() >= Duration::from_secs(1) => {
                let bar = match self.total {
                    Some(total) => ProgressBar::new(total).with_style(
                        ProgressStyle::with_template("{msg} [{bar:30}] {percent:>3}% ({eta} left)")
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                    ),
                    None => ProgressBar::new_spinner().with_style(
                        ProgressStyle::with_template("{spinner} {msg} {pos} ({per_sec})")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    ),
                };
                bar.set_message(self.label);
                bar.set_position(self.pos);
                bar.enable_steady_tick(Duration::from_millis(100));
                self.bar = Some(bar);
            }
            None => {}
        }
    }

    /// Runs `f` with the bar hidden (to print a line without tearing it).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Removes the bar.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
