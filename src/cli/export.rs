//! `export [--from OFFSET] [--to OFFSET]`: the state as JSON Lines that `import` reproduces.
//!
//! One line per context: a `create` op, a `meta` op with its labels (if any) and a `set` op per
//! key. A context whose values take more than [`LINE_BYTES`] of JSON continues on further
//! lines of `set` ops, so that no line becomes a commit too large for the log.

use super::args::Cli;
use super::output::{labels_json, println_flush, value_json, CliResult, Out, Progress};
use super::{close, open};
use serde_json::{json, Value as Json};
use std::sync::Arc;

/// Soft limit of one line's JSON.
pub const LINE_BYTES: usize = 4 << 20;

pub async fn export(cli: &Cli, out: Out, from: Option<u64>, to: Option<u64>) -> CliResult {
    let m = open(cli, out, false).await?;
    let state = match to {
        None => m.state(),
        Some(t) => Arc::new(m.state_at(t).await?),
    };
    close(m).await?;
    let from = from.unwrap_or(0);
    let contexts: Vec<_> = state
        .contexts()
        .filter(|(_, c)| c.version().0 >= from)
        .collect();
    let mut progress = Progress::new(out, "exporting contexts", Some(contexts.len() as u64));
    for (name, c) in contexts {
        let mut ops = vec![json!({ "op": "create", "context": name })];
        let labels = c.labels();
        if !labels.is_empty() {
            ops.push(json!({ "op": "meta", "context": name, "labels": labels_json(&labels) }));
        }
        let mut bytes = 0;
        for (key, value) in c.values() {
            let op =
                json!({ "op": "set", "context": name, "key": key, "value": value_json(&value) });
            let len = op.to_string().len();
            if bytes + len > LINE_BYTES && !ops.is_empty() {
                let line = json!({ "ops": Json::Array(std::mem::take(&mut ops)) });
                progress.suspend(|| println_flush(&line.to_string()));
                bytes = 0;
            }
            bytes += len;
            ops.push(op);
        }
        if !ops.is_empty() {
            let line = json!({ "ops": Json::Array(ops) });
            progress.suspend(|| println_flush(&line.to_string()));
        }
        progress.inc(1);
    }
    Ok(())
}
