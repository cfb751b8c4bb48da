//! `import`: JSON Lines on stdin, one commit a line, through group commit.
//!
//! The store stays open until stdin ends. Up to [`IN_FLIGHT`] lines are in flight at once so
//! that group commit can batch them; each line's commit is queued in line order (see
//! [`Pipeline::submit`]), so a line may depend on the lines before it (create, then set).
//! `{"line":N,"offset":O}` is printed and flushed as each commit is acknowledged under the
//! chosen durability, never before. A bad line is reported on stderr with its number and
//! rejected alone.

use super::args::Cli;
use super::output::{encode_value, println_flush, CliError, CliResult, Out, Progress};
use super::{close, open};
use ctxlog::event::Labels;
use ctxlog::{ContextManager, Offset, Op, Receipt, Update};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::BufRead;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Lines whose commits may be in flight at once.
pub const IN_FLIGHT: usize = 256;

/// One line: a commit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    /// The operations, applied all or none.
    pub ops: Vec<LineOp>,
    /// Expected versions: the commit is refused if a context is at another version.
    #[serde(default)]
    pub expect: BTreeMap<String, u64>,
}

/// One operation of a line.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum LineOp {
    /// Create a context.
    Create {
        context: String,
        #[serde(default)]
        labels: Labels,
    },
    /// Set a key.
    Set {
        context: String,
        key: String,
        value: Json,
    },
    /// Remove a key.
    Rm { context: String, key: String },
    /// Delete a context.
    Delete { context: String },
    /// Set (and remove) labels.
    Meta {
        context: String,
        #[serde(default)]
        labels: Labels,
        #[serde(default)]
        remove: Vec<String>,
    },
}

/// Parses one line into an update.
pub fn parse_line(text: &str) -> Result<Update, String> {
    let line: Line = serde_json::from_str(text).map_err(|e| format!("bad JSON: {e}"))?;
    if line.ops.is_empty() {
        return Err("no ops: a commit needs at least one operation".into());
    }
    let mut update = Update::new();
    for op in line.ops {
        let op = match op {
            LineOp::Create { context, labels } => Op::Create { context, labels },
            LineOp::Set {
                context,
                key,
                value,
            } => {
                let value = encode_value(&context, &key, &value).map_err(|e| e.msg)?;
                Op::Set {
                    context,
                    key,
                    value,
                }
            }
            LineOp::Rm { context, key } => Op::Remove { context, key },
            LineOp::Delete { context } => Op::Delete { context },
            LineOp::Meta {
                context,
                labels,
                remove,
            } => Op::Meta {
                context,
                set: labels,
                removed: remove,
            },
        };
        update = update.op(op);
    }
    for (context, version) in line.expect {
        update = update.expect(context, Offset(version));
    }
    Ok(update)
}

type Pending<'m> = Pin<Box<dyn Future<Output = ctxlog::Result<Receipt>> + Send + 'm>>;

/// Commits in flight, in line order.
struct Pipeline<'m> {
    manager: &'m ContextManager,
    in_flight: Vec<(u64, Pending<'m>)>,
    failed: u64,
    acked: u64,
    progress: Progress,
}

impl<'m> Pipeline<'m> {
    /// Starts a line's commit and queues it at once: the first poll of `update` validates the
    /// batch and hands it to the writer's queue (which has room: it holds far more than
    /// [`IN_FLIGHT`] requests), so lines reach the log in line order.
    fn submit(&mut self, cx: &mut Context<'_>, line: u64, update: Update) {
        let mut fut: Pending<'m> = Box::pin(self.manager.update(update));
        match fut.as_mut().poll(cx) {
            Poll::Ready(r) => {
                // Commits are acknowledged in offset order, so every earlier line's commit has
                // its answer by now: print those first, and the acks stay in line order.
                self.poll_in_flight(cx);
                self.report(line, r)
            }
            Poll::Pending => self.in_flight.push((line, fut)),
        }
    }

    fn report(&mut self, line: u64, result: ctxlog::Result<Receipt>) {
        self.progress.inc(1);
        match result {
            Ok(r) => {
                self.acked += 1;
                let ack = json!({ "line": line, "offset": r.offset.0 }).to_string();
                self.progress.suspend(|| println_flush(&ack));
            }
            Err(e) => self.reject(line, &e.to_string()),
        }
    }

    fn reject(&mut self, line: u64, why: &str) {
        self.failed += 1;
        let why = why.split_whitespace().collect::<Vec<_>>().join(" ");
        self.progress
            .suspend(|| eprintln!("error: line {line}: {why}"));
    }

    /// Polls every commit in flight; reports those that finished. True if any did.
    fn poll_in_flight(&mut self, cx: &mut Context<'_>) -> bool {
        let mut done = Vec::new();
        self.in_flight
            .retain_mut(|(line, fut)| match fut.as_mut().poll(cx) {
                Poll::Ready(r) => {
                    done.push((*line, r));
                    false
                }
                Poll::Pending => true,
            });
        let any = !done.is_empty();
        for (line, r) in done {
            self.report(line, r);
        }
        any
    }
}

/// Reads stdin on a thread of its own; sends (line number, text or why not).
fn read_stdin(tx: tokio::sync::mpsc::Sender<(u64, Result<String, String>)>) {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut buf = Vec::new();
    for n in 1u64.. {
        buf.clear();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                let _ = tx.blocking_send((n, Err(format!("cannot read stdin: {e}"))));
                break;
            }
        }
        let line = String::from_utf8(std::mem::take(&mut buf))
            .map_err(|_| "bad JSON: the line is not UTF-8".to_string());
        if tx.blocking_send((n, line)).is_err() {
            break;
        }
    }
}

pub async fn import(cli: &Cli, out: Out) -> CliResult {
    let m = open(cli, out, true).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(4 * IN_FLIGHT);
    std::thread::Builder::new()
        .name("ctxlog-stdin".into())
        .spawn(move || read_stdin(tx))?;
    let mut p = Pipeline {
        manager: &m,
        in_flight: Vec::with_capacity(IN_FLIGHT),
        failed: 0,
        acked: 0,
        progress: Progress::new(out, "importing lines", None),
    };
    let mut input_done = false;
    let driver = std::future::poll_fn(|cx| loop {
        while !input_done && p.in_flight.len() < IN_FLIGHT {
            match rx.poll_recv(cx) {
                Poll::Ready(Some((n, Ok(text)))) => {
                    if text.trim().is_empty() {
                        continue;
                    }
                    match parse_line(&text) {
                        Ok(update) => p.submit(cx, n, update),
                        Err(why) => p.reject(n, &why),
                    }
                }
                Poll::Ready(Some((n, Err(why)))) => p.reject(n, &why),
                Poll::Ready(None) => input_done = true,
                Poll::Pending => break,
            }
        }
        let freed = p.poll_in_flight(cx);
        if input_done && p.in_flight.is_empty() {
            return Poll::Ready(());
        }
        if !freed || input_done {
            return Poll::Pending;
        }
    });
    // Unconstrained: tokio's cooperative budget must never make a first poll return Pending
    // before the commit is queued (that would let a later line overtake it).
    tokio::task::unconstrained(driver).await;
    p.progress.finish();
    let failed = p.failed;
    drop(p);
    close(m).await?;
    if failed > 0 {
        return Err(CliError::silent(super::output::EXIT_ERROR));
    }
    Ok(())
}
