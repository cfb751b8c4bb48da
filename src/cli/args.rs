//! The command line: global options and subcommands (clap derive).

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// ctxlog: an embedded, event-sourced store of contexts, from the command line.
///
/// Values are JSON (stored as MessagePack). Every change is a commit in a checksummed log;
/// offsets number the commits. Exit codes: 0 success; 1 an error (one line on stderr naming
/// it; a store open in another process says "locked"); 2 usage; 3 corruption found.
#[derive(Debug, Parser)]
#[command(name = "ctxlog", version)]
pub struct Cli {
    /// The store's directory [default: $CTXLOG_DIR, else ./ctxlog-data]
    #[arg(long, global = true, env = "CTXLOG_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Machine-readable output (JSON) for every command
    #[arg(long, global = true)]
    pub json: bool,

    /// When a commit is acknowledged: after fdatasync (always), within 10 ms (batched), or
    /// when written to the OS (never)
    #[arg(long, global = true, value_enum, default_value_t = DurabilityArg::Always)]
    pub durability: DurabilityArg,

    /// Size of new log segments, in bytes (64 KiB ..= 4 GiB; default 64 MiB). A tuning and
    /// testing knob: smaller segments make open, verify and compaction cheaper per segment.
    #[arg(
        long,
        global = true,
        env = "CTXLOG_SEGMENT_BYTES",
        hide = true,
        value_name = "BYTES"
    )]
    pub segment_bytes: Option<u64>,

    /// Create new stores tamper-evident (a BLAKE3 chain hash in every record; see `digest`).
    /// Chosen when a store is created; an existing store keeps its choice.
    #[arg(long, global = true)]
    pub tamper_evident: bool,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The store directory: --dir, else $CTXLOG_DIR, else ./ctxlog-data.
    pub fn store_dir(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("ctxlog-data"))
    }
}

/// `--durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// Acknowledged means fdatasync'ed.
    Always,
    /// Acknowledged once written; fdatasync within 10 ms.
    Batched,
    /// Acknowledged once written; synced at rotation and close.
    Never,
}

/// A K=V pair.
#[derive(Debug, Clone)]
pub struct Pair(pub String, pub String);

fn parse_pair(s: &str) -> Result<Pair, String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok(Pair(k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a context
    Create {
        /// The context's name
        name: String,
        /// Initial labels
        #[arg(long = "label", value_name = "K=V", value_parser = parse_pair)]
        labels: Vec<Pair>,
    },
    /// Set a key (VALUE is parsed as JSON, else taken as a string)
    Set {
        /// The context
        name: String,
        /// The key
        key: String,
        /// The value: JSON (42, true, {"a":1}, "text"), else a plain string
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Show a context (every key) or one value
    Get {
        /// The context
        name: String,
        /// One key
        key: Option<String>,
        /// Read as of an offset or a recovery point's label
        #[arg(long, value_name = "OFFSET|LABEL")]
        at: Option<String>,
    },
    /// Remove a key
    Rm {
        /// The context
        name: String,
        /// The key
        key: String,
    },
    /// Delete a context (its history stays in the log)
    Delete {
        /// The context
        name: String,
    },
    /// List the live contexts
    List {
        /// List as of an offset or a recovery point's label
        #[arg(long, value_name = "OFFSET|LABEL")]
        at: Option<String>,
    },
    /// Set labels (K=V ...), remove labels (--rm K), or with neither print the labels
    Meta {
        /// The context
        name: String,
        /// Labels to set
        #[arg(value_name = "K=V", value_parser = parse_pair)]
        set: Vec<Pair>,
        /// Labels to remove
        #[arg(long = "rm", value_name = "K")]
        remove: Vec<String>,
    },
    /// A context's history: offset, time, event, old -> new value
    History {
        /// The context
        name: String,
    },
    /// Print commits from the log files (read-only, without the lock)
    ///
    /// Reads the segment files directly and never takes the store's lock, so it works while
    /// another process has the store open. With --follow it polls the files every 100 ms and
    /// prints each commit as soon as it is in the file; under --durability always a record is
    /// in the file a moment before its fdatasync returns and it is acknowledged.
    Log {
        /// First offset to print
        #[arg(long, value_name = "OFFSET")]
        from: Option<u64>,
        /// Only events that concern this context
        #[arg(long, value_name = "NAME")]
        context: Option<String>,
        /// Keep printing commits as they land (one JSON object a line with --json)
        #[arg(long)]
        follow: bool,
    },
    /// Segments, snapshots, recovery points and the lock holder (read-only, without the lock)
    Inspect,
    /// Check every record, header and snapshot (read-only, without the lock); exit 3 on damage
    ///
    /// With --digest OFFSET:HASH (a tamper-evident store), also open the store and prove the
    /// history up to OFFSET is the one that produced HASH; exit 3 if it is not.
    Verify {
        /// A digest printed earlier by `ctxlog digest`
        #[arg(long, value_name = "OFFSET:HASH")]
        digest: Option<String>,
    },
    /// Print the digest (OFFSET:HASH) of a tamper-evident store's history
    Digest {
        /// The digest at an earlier offset (default: the last)
        #[arg(long, value_name = "OFFSET")]
        at: Option<u64>,
    },
    /// Audit proofs of point-in-time states, checkable without the store
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Open the store and print its statistics and what open did
    Stats,
    /// Recovery points
    Point {
        #[command(subcommand)]
        command: PointCommand,
    },
    /// Bring every context back to its state at a recovery point or offset
    Restore {
        /// A recovery point's label or an offset
        #[arg(value_name = "LABEL|OFFSET")]
        at: String,
    },
    /// Write a snapshot of the current state now
    Snapshot,
    /// Remove log segments wholly before an offset
    Compact {
        /// Segments whose records all lie before this offset are removed
        #[arg(long, value_name = "OFFSET")]
        before: u64,
    },
    /// Make a context the current one (the previous current one is deactivated)
    Use {
        /// The context
        name: String,
    },
    /// Print the current context (or the default when none is current) and the active ones
    Current,
    /// Mark a context active
    Activate {
        /// The context
        name: String,
    },
    /// Mark a context inactive
    Deactivate {
        /// The context
        name: String,
    },
    /// Set the default context (with no NAME: print it; --clear: unset it)
    Default {
        /// The context
        name: Option<String>,
        /// Unset the default
        #[arg(long, conflicts_with = "name")]
        clear: bool,
    },
    /// Apply JSON Lines from stdin, one commit a line; print {"line":N,"offset":O} per ack
    ///
    /// A line: {"ops":[{"op":"create","context":"c","labels":{..}},
    /// {"op":"set","context":"c","key":"k","value":1}, {"op":"rm","context":"c","key":"k"},
    /// {"op":"delete","context":"c"}, {"op":"meta","context":"c","labels":{"team":"x"},
    /// "remove":["old"]}], "expect":{"c":12}}. Up to 256 lines are in flight at once, submitted
    /// in line order; an ack is printed only once its commit is acknowledged under the chosen
    /// durability. A bad line is reported on stderr with its number and rejected alone; exit
    /// code 1 at the end if any line failed.
    Import,
    /// Write the state as JSON Lines that `import` reproduces (one line per context)
    Export {
        /// Only contexts changed after this offset (default: every context)
        #[arg(long, value_name = "OFFSET")]
        from: Option<u64>,
        /// The state as of this offset (default: the last)
        #[arg(long, value_name = "OFFSET")]
        to: Option<u64>,
    },
    /// A narrated tour: concurrent writers, a mistake, a point-in-time read, a restore and a
    /// simulated crash (in a temporary directory unless --dir or $CTXLOG_DIR is given)
    Demo,
    /// A quick benchmark on a temporary directory in the current directory
    Bench {
        /// Seconds for each timed phase
        #[arg(long, default_value_t = 1.5)]
        seconds: f64,
        /// Commits in the bulk phase
        #[arg(long, default_value_t = 200_000)]
        bulk: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum PointCommand {
    /// Name the current end of the log; prints the offset
    Create {
        /// The label
        label: String,
    },
    /// List the recovery points
    List,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Write a proof file: the records up to OFFSET and the digest they produce
    Export {
        /// The offset to prove (default: the last)
        #[arg(long, value_name = "OFFSET")]
        at: Option<u64>,
        /// The proof file to write
        #[arg(long, value_name = "FILE", default_value = "ctxlog-proof.bin")]
        out: std::path::PathBuf,
    },
    /// Re-check a proof file offline: recompute every chain hash, replay the state
    Check {
        /// The proof file
        file: std::path::PathBuf,
        /// A digest you trust (from `ctxlog digest`); without it the check proves only that
        /// the file is self-consistent
        #[arg(long, value_name = "OFFSET:HASH")]
        digest: Option<String>,
    },
}
