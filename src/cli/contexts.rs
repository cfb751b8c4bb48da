//! Contexts: create, set, get, rm, delete, list, meta, history.

use super::args::{Cli, Pair};
use super::output::{
    compact, encode_value, fmt_time, labels_json, parse_value, value_json, CliError, CliResult, Out,
};
use super::{close, open};
use ctxlog::event::{Event, Labels};
use ctxlog::model::{check_context_name, check_key};
use ctxlog::state::{ContextState, State};
use ctxlog::{At, ContextManager, Error, Receipt};
use serde_json::{json, Map, Value as Json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// `OFFSET|LABEL`: digits are an offset, anything else a recovery point's label.
pub fn parse_at(s: &str) -> At {
    match s.parse::<u64>() {
        Ok(o) => At::from(o),
        Err(_) => At::Label(s.to_string()),
    }
}

/// A receipt as JSON.
pub fn receipt_json(r: &Receipt) -> Json {
    serde_json::to_value(r).unwrap_or_else(|_| json!({ "offset": r.offset.0 }))
}

/// Prints a receipt: JSON, or `what (offset N)`.
pub fn print_receipt(out: Out, r: &Receipt, what: &str) {
    out.emit(&receipt_json(r), || format!("{what} (offset {})", r.offset));
}

fn pairs_to_labels(pairs: &[Pair]) -> Labels {
    pairs.iter().map(|p| (p.0.clone(), p.1.clone())).collect()
}

/// The state to read: the current one, or as of `at`.
pub async fn state_for(m: &ContextManager, at: Option<&str>) -> CliResult<Arc<State>> {
    Ok(match at {
        None => m.state(),
        Some(a) => Arc::new(m.state_at(parse_at(a)).await?),
    })
}

/// A live context of `state`, or the error that names it.
pub fn context_of<'s>(state: &'s State, name: &str) -> CliResult<&'s ContextState> {
    check_context_name(name)?;
    state.context(name).ok_or_else(|| {
        Error::NotFound {
            context: name.to_string(),
        }
        .into()
    })
}

/// Every value of a context as one JSON object.
pub fn context_values(c: &ContextState) -> Map<String, Json> {
    c.values()
        .map(|(k, v)| (k.to_string(), value_json(&v)))
        .collect()
}

pub async fn create(cli: &Cli, out: Out, name: &str, labels: &[Pair]) -> CliResult {
    let m = open(cli, out, true).await?;
    let r = m.create_with_labels(name, pairs_to_labels(labels)).await?;
    close(m).await?;
    print_receipt(out, &r, &format!("created {name}"));
    Ok(())
}

pub async fn set(cli: &Cli, out: Out, name: &str, key: &str, value: &str) -> CliResult {
    check_context_name(name)?;
    check_key(name, key)?;
    let value = encode_value(name, key, &parse_value(value))?;
    let m = open(cli, out, false).await?;
    let r = m.set_value(name, key, value).await?;
    close(m).await?;
    print_receipt(out, &r, &format!("set {name}/{key}"));
    Ok(())
}

pub async fn get(
    cli: &Cli,
    out: Out,
    name: &str,
    key: Option<&str>,
    at: Option<&str>,
) -> CliResult {
    check_context_name(name)?;
    if let Some(key) = key {
        check_key(name, key)?;
    }
    let m = open(cli, out, false).await?;
    let state = state_for(&m, at).await?;
    close(m).await?;
    let c = context_of(&state, name)?;
    match key {
        Some(key) => {
            let v = c.get(key).ok_or_else(|| Error::KeyNotFound {
                context: name.to_string(),
                key: key.to_string(),
            })?;
            let v = value_json(&v);
            out.emit(&v, || compact(&v));
        }
        None => {
            let values = context_values(c);
            out.emit(&Json::Object(values.clone()), || {
                if values.is_empty() {
                    return "(no keys)".into();
                }
                values
                    .iter()
                    .map(|(k, v)| format!("{k} = {}\n", compact(v)))
                    .collect()
            });
        }
    }
    Ok(())
}

pub async fn rm(cli: &Cli, out: Out, name: &str, key: &str) -> CliResult {
    check_context_name(name)?;
    check_key(name, key)?;
    let m = open(cli, out, false).await?;
    let r = m.remove(name, key).await?;
    close(m).await?;
    print_receipt(out, &r, &format!("removed {name}/{key}"));
    Ok(())
}

pub async fn delete(cli: &Cli, out: Out, name: &str) -> CliResult {
    check_context_name(name)?;
    let m = open(cli, out, false).await?;
    let r = m.delete(name).await?;
    close(m).await?;
    print_receipt(out, &r, &format!("deleted {name}"));
    Ok(())
}

pub async fn list(cli: &Cli, out: Out, at: Option<&str>) -> CliResult {
    let m = open(cli, out, false).await?;
    let state = state_for(&m, at).await?;
    close(m).await?;
    let rows: Vec<Json> = state
        .contexts()
        .map(|(n, c)| {
            json!({
                "name": n,
                "version": c.version().0,
                "keys": c.len(),
                "labels": labels_json(&c.labels()),
            })
        })
        .collect();
    out.emit(&Json::Array(rows), || {
        state
            .contexts()
            .map(|(n, _)| format!("{n}\n"))
            .collect::<String>()
    });
    Ok(())
}

pub async fn meta(cli: &Cli, out: Out, name: &str, set: &[Pair], remove: &[String]) -> CliResult {
    check_context_name(name)?;
    let m = open(cli, out, false).await?;
    if set.is_empty() && remove.is_empty() {
        let state = m.state();
        close(m).await?;
        let labels = context_of(&state, name)?.labels();
        out.emit(&labels_json(&labels), || {
            labels.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
        });
        return Ok(());
    }
    let r = m
        .set_metadata(name, pairs_to_labels(set), remove.to_vec())
        .await?;
    close(m).await?;
    print_receipt(out, &r, &format!("labels of {name} changed"));
    Ok(())
}

/// What `history` tracks of a context while walking its events: values as JSON.
type Values = BTreeMap<String, Json>;

fn change(key: &str, old: Option<&Json>, new: Option<&Json>) -> Json {
    json!({ "key": key, "old": old, "new": new })
}

fn show(v: Option<&Json>) -> String {
    v.map_or_else(|| "(none)".to_string(), compact)
}

/// One history row: the JSON object and its plain detail text; updates `values`.
fn history_row(values: &mut Values, event: &Event) -> (Json, String) {
    let mut row = json!({ "event": event.kind() });
    let detail = match event {
        Event::ContextCreated { labels, .. } => {
            values.clear();
            row["labels"] = labels_json(labels);
            if labels.is_empty() {
                String::new()
            } else {
                format!("labels {}", compact(&labels_json(labels)))
            }
        }
        Event::ValueSet { key, value, .. } => {
            let new = super::output::bytes_json(value);
            let old = values.insert(key.clone(), new.clone());
            row["key"] = json!(key);
            row["old"] = json!(old);
            row["new"] = new.clone();
            format!("{key}: {} -> {}", show(old.as_ref()), compact(&new))
        }
        Event::ValueRemoved { key, .. } => {
            let old = values.remove(key);
            row["key"] = json!(key);
            row["old"] = json!(old);
            row["new"] = Json::Null;
            format!("{key}: {} -> (removed)", show(old.as_ref()))
        }
        Event::MetadataChanged { set, removed, .. } => {
            row["set"] = labels_json(set);
            row["removed"] = json!(removed);
            let mut s = Vec::new();
            if !set.is_empty() {
                s.push(format!("labels set {}", compact(&labels_json(set))));
            }
            if !removed.is_empty() {
                s.push(format!("labels removed {}", removed.join(",")));
            }
            s.join("; ")
        }
        Event::ContextDeleted { .. } => {
            let n = values.len();
            values.clear();
            format!("{n} keys dropped")
        }
        Event::ContextRestored {
            from_offset, image, ..
        } => {
            let after: Values = image
                .as_ref()
                .map(|i| {
                    i.values
                        .iter()
                        .map(|(k, v)| (k.clone(), super::output::bytes_json(v)))
                        .collect()
                })
                .unwrap_or_default();
            let mut keys: Vec<&String> = values.keys().chain(after.keys()).collect();
            keys.sort();
            keys.dedup();
            let changes: Vec<(String, Json)> = keys
                .into_iter()
                .filter(|k| values.get(*k) != after.get(*k))
                .map(|k| {
                    let text = format!("{k}: {} -> {}", show(values.get(k)), show(after.get(k)));
                    (text, change(k, values.get(k), after.get(k)))
                })
                .collect();
            row["from_offset"] = json!(from_offset.0);
            row["exists"] = json!(image.is_some());
            row["changes"] = Json::Array(changes.iter().map(|c| c.1.clone()).collect());
            let mut text = format!("to offset {from_offset}");
            if image.is_none() {
                text += " (did not exist then: deleted)";
            }
            for (t, _) in &changes {
                text += &format!("; {t}");
            }
            *values = after;
            text
        }
        other => {
            let full = super::output::event_json(other);
            if let (Json::Object(r), Json::Object(f)) = (&mut row, full) {
                r.extend(f);
            }
            super::output::event_text(other)
        }
    };
    (row, detail)
}

pub async fn history(cli: &Cli, out: Out, name: &str) -> CliResult {
    check_context_name(name)?;
    let m = open(cli, out, false).await?;
    let entries = m.history(name).await?;
    if entries.is_empty() && m.state().context_any(name).is_none() {
        return Err(CliError::from(Error::NotFound {
            context: name.to_string(),
        }));
    }
    // After a compaction the log starts later: seed the values from the state before it.
    let mut values = Values::new();
    let first = m.log().first_offset();
    if first.0 > 1 {
        if let Ok(s) = m.state_at(first.prev()).await {
            if let Some(c) = s.context(name) {
                values = context_values(c).into_iter().collect();
            }
        }
    }
    close(m).await?;
    let mut rows = Vec::new();
    let mut text = String::new();
    for e in &entries {
        let (mut row, detail) = history_row(&mut values, &e.event);
        row["offset"] = json!(e.offset.0);
        row["ts_ms"] = json!(e.ts_ms);
        row["time"] = json!(fmt_time(e.ts_ms));
        text += &format!(
            "{:>8}  {}  {:<20} {}\n",
            e.offset.0,
            fmt_time(e.ts_ms),
            e.event.kind(),
            detail
        );
        rows.push(row);
    }
    out.emit(&Json::Array(rows), || text);
    Ok(())
}
