//! The `ctxlog` command-line tool.
//!
//! One module per concept: [`args`] (the command line), [`output`] (plain/JSON output, errors,
//! progress), [`contexts`] (create/set/get/...), [`logcmd`] (log and --follow), [`files`]
//! (reading segment files without the lock), [`inspect`], [`verify`], [`recovery`] (points,
//! restore, snapshot, compact, stats), [`adapter`], [`import`], [`export`], [`demo`] and
//! [`bench`].
//!
//! Commands that change or read state open the store through the engine, which takes
//! `DIR/LOCK`: while another process has the store open they fail with "locked". `log`,
//! `inspect` and `verify` read the files directly and never take the lock.

pub mod adapter;
pub mod args;
pub mod audit;
pub mod bench;
pub mod contexts;
pub mod demo;
pub mod demo_crash;
pub mod export;
pub mod files;
pub mod import;
pub mod inspect;
pub mod logcmd;
pub mod output;
pub mod recovery;
pub mod verify;

use args::{AuditCommand, Cli, Command, DurabilityArg, PointCommand};
use clap::Parser;
use ctxlog::{create_manager_with_config, Config, ContextManager, Durability};
use ctxlog_format::layout::body_start;
use output::{CliError, CliResult, Out};
use std::path::Path;
use std::time::Duration;

/// Parses the command line, runs the command, and returns the process exit code.
pub fn run() -> i32 {
    let cli = Cli::parse();
    let out = Out { json: cli.json };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return output::EXIT_ERROR;
        }
    };
    let result = runtime.block_on(dispatch(&cli, out));
    drop(runtime);
    match result {
        Ok(()) => 0,
        Err(e) => {
            if !e.msg.is_empty() {
                let line = e.msg.split_whitespace().collect::<Vec<_>>().join(" ");
                eprintln!("error: {line}");
            }
            e.code
        }
    }
}

async fn dispatch(cli: &Cli, out: Out) -> CliResult {
    let dir = cli.store_dir();
    match &cli.command {
        Command::Create { name, labels } => contexts::create(cli, out, name, labels).await,
        Command::Set { name, key, value } => contexts::set(cli, out, name, key, value).await,
        Command::Get { name, key, at } => {
            contexts::get(cli, out, name, key.as_deref(), at.as_deref()).await
        }
        Command::Rm { name, key } => contexts::rm(cli, out, name, key).await,
        Command::Delete { name } => contexts::delete(cli, out, name).await,
        Command::List { at } => contexts::list(cli, out, at.as_deref()).await,
        Command::Meta { name, set, remove } => contexts::meta(cli, out, name, set, remove).await,
        Command::History { name } => contexts::history(cli, out, name).await,
        Command::Log {
            from,
            context,
            follow,
        } => logcmd::log(&dir, out, *from, context.as_deref(), *follow).await,
        Command::Inspect => inspect::inspect(&dir, out),
        Command::Verify { digest } => {
            verify::verify(&dir, out)?;
            match digest {
                Some(d) => audit::verify_digest(cli, out, d).await,
                None => Ok(()),
            }
        }
        Command::Digest { at } => audit::digest(cli, out, *at).await,
        Command::Audit { command } => match command {
            AuditCommand::Export { at, out: file } => audit::export(cli, out, *at, file).await,
            AuditCommand::Check { file, digest } => audit::check(out, file, digest.as_deref()),
        },
        Command::Stats => recovery::stats(cli, out).await,
        Command::Point { command } => match command {
            PointCommand::Create { label } => recovery::point_create(cli, out, label).await,
            PointCommand::List => recovery::point_list(cli, out).await,
        },
        Command::Restore { at } => recovery::restore(cli, out, at).await,
        Command::Snapshot => recovery::snapshot(cli, out).await,
        Command::Compact { before } => recovery::compact(cli, out, *before).await,
        Command::Use { name } => adapter::switch(cli, out, name).await,
        Command::Current => adapter::current(cli, out).await,
        Command::Activate { name } => adapter::activate(cli, out, name).await,
        Command::Deactivate { name } => adapter::deactivate(cli, out, name).await,
        Command::Default { name, clear } => {
            adapter::default(cli, out, name.as_deref(), *clear).await
        }
        Command::Import => import::import(cli, out).await,
        Command::Export { from, to } => export::export(cli, out, *from, *to).await,
        Command::Demo => demo::demo(cli, out).await,
        Command::Bench { seconds, bulk } => bench::bench(cli, out, *seconds, *bulk).await,
    }
}

/// The engine's durability for `--durability`.
pub fn durability(arg: DurabilityArg) -> Durability {
    match arg {
        DurabilityArg::Always => Durability::Always,
        DurabilityArg::Batched => Durability::Batched {
            max_delay: Duration::from_millis(10),
        },
        DurabilityArg::Never => Durability::Never,
    }
}

/// The store's configuration from the global options.
pub fn config(cli: &Cli) -> Config {
    let mut config = Config::new(cli.store_dir());
    config.durability = durability(cli.durability);
    config.tamper_evident = cli.tamper_evident;
    set_segment_bytes(&mut config, cli.segment_bytes);
    config
}

/// Applies `--segment-bytes`, shrinking the record and value limits to fit one segment.
pub fn set_segment_bytes(config: &mut Config, bytes: Option<u64>) {
    if let Some(bytes) = bytes {
        config.segment_bytes = bytes;
        // A record must fit in an empty segment: header, chain seed and frame header (with a
        // chain hash: the larger layout, so that tamper-evident stores fit too) come off.
        let chained = ctxlog_format::FrameLayout { chain_hash: true };
        let room = bytes.saturating_sub((body_start(true) + chained.overhead()) as u64);
        config.record_bytes_max = config.record_bytes_max.min(room).max(1024);
        config.value_bytes_max = config.value_bytes_max.min(config.record_bytes_max);
    }
}

/// True if `dir` holds a store (its `wal/` directory exists).
pub fn store_exists(dir: &Path) -> bool {
    dir.join("wal").is_dir()
}

/// Refuses a directory that holds no store.
pub fn require_store(dir: &Path) -> CliResult {
    if store_exists(dir) {
        Ok(())
    } else {
        Err(CliError::new(format!(
            "no ctxlog store in {} (create one with `ctxlog --dir {} create NAME`)",
            dir.display(),
            dir.display()
        )))
    }
}

/// Opens the store (creating it when `create` is true); shows a spinner if open takes more
/// than a second (replaying a long log).
pub async fn open(cli: &Cli, out: Out, create: bool) -> CliResult<ContextManager> {
    let config = config(cli);
    if !create {
        require_store(&config.dir)?;
    }
    open_config(config, out).await
}

/// Opens a store with `config`, with a spinner after a second.
pub async fn open_config(config: Config, out: Out) -> CliResult<ContextManager> {
    let opening = create_manager_with_config(config);
    let mut spinner = output::Progress::new(out, "opening the store (replaying the log)", None);
    let ticker = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            spinner.inc(0);
        }
    };
    let manager = tokio::select! {
        m = opening => m?,
        _ = ticker => unreachable!("the ticker never ends"),
    };
    Ok(manager)
}

/// Closes the store (finishes queued commits, releases the lock).
pub async fn close(manager: ContextManager) -> CliResult {
    manager.close().await?;
    Ok(())
}
