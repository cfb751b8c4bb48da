//! `demo`: the main scenario, narrated step by step. A store for an app (users, billing,
//! feature flags); concurrent writers with optimistic concurrency; a recovery point; a
//! mistake; a point-in-time read; a restore; a reopen; then a simulated power loss in the
//! middle of writes ([`super::demo_crash`]); and a summary. Runs in a temporary directory
//! unless `--dir` (or `$CTXLOG_DIR`) names one, which must hold no store yet.

use super::args::Cli;
use super::demo_crash;
use super::output::{compact, fmt_time, value_json, CliError, CliResult, Out};
use super::{config, durability, store_exists};
use ctxlog::event::Event;
use ctxlog::{create_manager_with_config, Config, ContextManager, Error, Update};
use serde_json::{json, Value as Json};
use std::time::{Duration, Instant};

/// Writers in the concurrency step, and invoices each issues.
const WRITERS: usize = 8;
const INVOICES: u64 = 25;
/// Audit writers beside them, and entries each appends.
const AUDITORS: usize = 16;
const ENTRIES: u64 = 50;

struct Narrator {
    json: bool,
}

impl Narrator {
    fn say(&self, text: &str) {
        if !self.json {
            super::output::println_flush(text);
        }
    }

    fn step(&self, n: u32, title: &str) {
        self.say(&format!("\n{n}. {title}"));
    }
}

fn user(name: &str, plan: &str, seats: u32) -> Json {
    json!({ "name": name, "plan": plan, "seats": seats })
}

fn plans(state: &ctxlog::state::State) -> String {
    state.context("users").map_or_else(
        || "(no users context)".into(),
        |c| {
            c.values()
                .map(|(k, v)| format!("{k}: {}", value_json(&v)["plan"]))
                .collect::<Vec<_>>()
                .join(", ")
        },
    )
}

/// One writer: issues `INVOICES` invoices; each reads billing, adds one, and commits only if
/// billing is still at the version read. Returns the version conflicts it met (and retried).
async fn invoice_writer(m: ContextManager, writer: usize) -> Result<u64, Error> {
    let mut conflicts = 0;
    for i in 0..INVOICES {
        let amount = 1000 + 100 * writer as u64 + i;
        loop {
            let billing = m.get("billing")?;
            let read = |k: &str| -> Result<u64, Error> {
                Ok(billing.get(k).and_then(|v| v.decode().ok()).unwrap_or(0))
            };
            let update = Update::new()
                .set(
                    "billing",
                    "invoices_issued",
                    &(read("invoices_issued")? + 1),
                )?
                .set(
                    "billing",
                    "revenue_cents",
                    &(read("revenue_cents")? + amount),
                )?
                .expect("billing", billing.version());
            match m.update(update).await {
                Ok(_) => break,
                Err(Error::VersionConflict { actual, .. }) => {
                    // Someone else's invoice won: read again once it is visible.
                    conflicts += 1;
                    let mut version = m.watch_context("billing");
                    let wait = version.wait_for(|v| *v >= actual);
                    let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(conflicts)
}

/// One audit writer: appends entries under keys of its own, with no expected version, so its
/// commits never conflict and share fdatasyncs with everyone else's (group commit).
async fn audit_writer(m: ContextManager, writer: usize) -> Result<(), Error> {
    for i in 0..ENTRIES {
        let entry = json!({ "writer": writer, "seq": i, "action": "invoice.viewed" });
        m.set("audit", &format!("w{writer:02}-{i:03}"), &entry)
            .await?;
    }
    Ok(())
}

pub async fn demo(cli: &Cli, out: Out) -> CliResult {
    let started = Instant::now();
    let say = Narrator { json: out.json };
    let (_tmp, config) = match &cli.dir {
        Some(dir) => {
            if store_exists(dir) {
                return Err(CliError::new(format!(
                    "{} holds a store already; the demo needs a new directory",
                    dir.display()
                )));
            }
            (None, config(cli))
        }
        None => {
            let tmp = tempfile::Builder::new().prefix("ctxlog-demo-").tempdir()?;
            let mut c = Config::new(tmp.path().join("store"));
            c.durability = durability(cli.durability);
            super::set_segment_bytes(&mut c, cli.segment_bytes);
            (Some(tmp), c)
        }
    };
    say.say("ctxlog demo: an event-sourced store, step by step");
    say.say(&format!("store: {}", config.dir.display()));
    say.say(&format!(
        "durability: {:?}{}",
        cli.durability,
        if config.durability == ctxlog::Durability::Always {
            " (a commit is acknowledged only once fdatasync has returned)"
        } else {
            ""
        }
    ));
    let m = create_manager_with_config(config.clone()).await?;

    say.step(
        1,
        "An app's contexts, created and filled in one atomic commit",
    );
    let mut setup = Update::new()
        .create("users")
        .create("billing")
        .create("feature-flags")
        .create("audit");
    for (k, v) in [
        ("alice", user("Alice", "pro", 5)),
        ("bob", user("Bob", "team", 12)),
        ("carol", user("Carol", "pro", 3)),
    ] {
        setup = setup.set("users", k, &v)?;
    }
    setup = setup
        .set("billing", "invoices_issued", &0u64)?
        .set("billing", "revenue_cents", &0u64)?
        .set("feature-flags", "dark_mode", &false)?
        .set("feature-flags", "new_checkout", &true)?;
    let r = m.update(setup).await?;
    for name in m.list() {
        let c = m.get(&name)?;
        let keys: Vec<&str> = c.keys().collect();
        say.say(&format!("   {name:<14} keys {}", keys.join(", ")));
    }
    say.say(&format!(
        "   -> one commit at offset {}: every context is at version {}",
        r.offset, r.offset
    ));

    say.step(
        2,
        "Concurrent writers: optimistic concurrency and group commit",
    );
    say.say(&format!("   {WRITERS} writers issue {INVOICES} invoices each. An invoice is one commit that updates the"));
    say.say(
        "   billing totals only if billing is still at the version the writer read; on a version",
    );
    say.say("   conflict the writer reads billing again and retries.");
    say.say(&format!("   Meanwhile {AUDITORS} writers append {ENTRIES} audit entries each, with no expected version."));
    let before = m.stats();
    let t = Instant::now();
    let invoices: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(invoice_writer(m.clone(), w)))
        .collect();
    let audits: Vec<_> = (0..AUDITORS)
        .map(|w| tokio::spawn(audit_writer(m.clone(), w)))
        .collect();
    let join_err = |e: tokio::task::JoinError| CliError::new(format!("writer task failed: {e}"));
    let mut conflicts = 0;
    for task in invoices {
        conflicts += task.await.map_err(join_err)??;
    }
    for task in audits {
        task.await.map_err(join_err)??;
    }
    let after = m.stats();
    let issued: u64 = m.get_as("billing", "invoices_issued")?;
    let revenue: u64 = m.get_as("billing", "revenue_cents")?;
    let commits = after.commits - before.commits;
    let syncs = after.log.syncs - before.log.syncs;
    say.say(&format!(
        "   {commits} commits in {:.0} ms; {conflicts} version conflicts were detected and retried",
        t.elapsed().as_secs_f64() * 1000.0
    ));
    say.say(&format!(
        "   billing: invoices_issued = {issued} (expected {}: no update lost), revenue_cents = {revenue}",
        WRITERS as u64 * INVOICES
    ));
    say.say(&format!("   audit: {} entries", m.get("audit")?.len()));
    say.say(&format!(
        "   group commit: {commits} commits took {syncs} fdatasyncs ({:.1} commits per fdatasync)",
        commits as f64 / syncs.max(1) as f64
    ));

    say.step(3, "A recovery point before a risky migration");
    let point = m.create_recovery_point("before-migration").await?;
    say.say(&format!("   \"before-migration\" = offset {point}"));

    say.step(
        4,
        "The mistake: a migration downgrades every user to \"free\" and drops feature-flags",
    );
    let mut bad = Update::new();
    for (k, v) in m.get("users")?.values() {
        let mut u = value_json(&v);
        u["plan"] = json!("free");
        bad = bad.set("users", k, &u)?;
    }
    let mistake = m.update(bad.delete("feature-flags")).await?;
    say.say(&format!(
        "   committed at offset {}: users now {}",
        mistake.offset,
        plans(&m.state())
    ));
    say.say(&format!(
        "   feature-flags exists: {}",
        m.get("feature-flags").is_ok()
    ));

    say.step(
        5,
        "A point-in-time read of the state before the mistake (the live state is untouched)",
    );
    let old = m.state_at("before-migration").await?;
    say.say(&format!(
        "   at offset {}: users {}",
        old.offset(),
        plans(&old)
    ));
    if let Some(flags) = old.context("feature-flags") {
        let vals: Vec<String> = flags
            .values()
            .map(|(k, v)| format!("{k}={}", compact(&value_json(&v))))
            .collect();
        say.say(&format!("   feature-flags then: {}", vals.join(", ")));
    }
    say.say("   history of users/alice:");
    for h in m.history("users").await? {
        if let Event::ValueSet { key, value, .. } = &h.event {
            if key == "alice" {
                let plan = super::output::bytes_json(value)["plan"].clone();
                say.say(&format!(
                    "     offset {:>5}  {}  plan = {plan}",
                    h.offset.0,
                    fmt_time(h.ts_ms)
                ));
            }
        }
    }

    say.step(6, "Restore to \"before-migration\"");
    let current = m.state();
    let changes = current.restore_events(&old);
    let restored = m.restore("before-migration").await?;
    for e in &changes {
        if let Event::ContextRestored { context, image, .. } = e {
            let how = match (image, current.context(context)) {
                (Some(_), None) => "restored (it had been deleted)",
                (Some(_), Some(_)) => "restored to its state at the recovery point",
                (None, _) => "deleted (it did not exist then)",
            };
            say.say(&format!("   {context}: {how}"));
        }
    }
    say.say(&format!(
        "   -> one commit at offset {}: users {}",
        restored.offset,
        plans(&m.state())
    ));
    say.say(&format!(
        "   billing was not touched by the mistake and keeps invoices_issued = {}",
        m.get_as::<u64>("billing", "invoices_issued")?
    ));
    say.say(&format!(
        "   the mistake stays in the history (offset {}): the log is never rewritten",
        mistake.offset
    ));

    say.step(7, "Close and reopen: the state is rebuilt from the log");
    let state_before = m.state();
    let first_stats = m.stats();
    m.close().await?;
    let m2 = create_manager_with_config(config.clone()).await?;
    let report = m2.open_report().clone();
    let same = *m2.state() == *state_before;
    say.say(&format!(
        "   open took {} ms, replayed {} commits; state identical to before the close: {}",
        report.open_ms,
        report.replayed,
        if same { "yes" } else { "NO" }
    ));
    m2.close().await?;

    say.step(
        8,
        "A power loss in the middle of writes (simulated on an in-memory disk)",
    );
    let crash = demo_crash::run(&say_fn(&say)).await?;

    say.step(9, "Summary");
    say.say(&format!(
        "   main store: {} commits, {} fdatasyncs, {:.1} commits per write on average (group commit), {} bytes of log",
        state_before.offset(), first_stats.log.syncs, first_stats.avg_batch, first_stats.log.bytes
    ));
    say.say(&format!(
        "   crash test: {} acknowledged commits before the power loss, all {} after recovery",
        crash.acked,
        if crash.all_present {
            "present"
        } else {
            "NOT present"
        }
    ));
    say.say(&format!(
        "   total time: {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    if _tmp.is_some() {
        say.say("   (the temporary store is removed now; run with --dir DIR to keep one)");
    }
    let summary = json!({
        "dir": config.dir.display().to_string(),
        "commits": state_before.offset().0,
        "fsyncs": first_stats.log.syncs,
        "avg_batch": first_stats.avg_batch,
        "version_conflicts": conflicts,
        "invoices_issued": issued,
        "recovery_point": point.0,
        "mistake_offset": mistake.offset.0,
        "restore_offset": restored.offset.0,
        "reopen_identical": same,
        "crash": crash.json(),
        "seconds": started.elapsed().as_secs_f64(),
    });
    if out.json {
        super::output::println_flush(&summary.to_string());
    }
    if !same || !crash.all_present || issued != WRITERS as u64 * INVOICES {
        return Err(CliError::new("the demo found an inconsistency (see above)"));
    }
    Ok(())
}

fn say_fn(n: &Narrator) -> impl Fn(&str) + '_ {
    move |s| n.say(s)
}
