//! Metrics, through the `metrics` crate facade: ctxlog records, the application picks the
//! exporter (`examples/prometheus.rs` serves them in Prometheus text format). With no recorder
//! installed every call here is a no-op.
//!
//! | name | kind | what |
//! |---|---|---|
//! | `ctxlog_commits_total` | counter | commits acknowledged |
//! | `ctxlog_commits_rejected_total` | counter | commits the writer refused (version conflict, missing context, schema, too large); input refused before the writer (bad names, oversized values) is not counted |
//! | `ctxlog_events_total` | counter | events in acknowledged commits |
//! | `ctxlog_log_bytes_total` | counter | bytes written to segments |
//! | `ctxlog_fsyncs_total` | counter | `fdatasync` calls on segments |
//! | `ctxlog_batch_records` | histogram | records per write (group commit at work) |
//! | `ctxlog_commit_latency_seconds` | histogram | submit to acknowledgement |
//! | `ctxlog_fsync_latency_seconds` | histogram | one `fdatasync` |
//! | `ctxlog_snapshot_seconds` | histogram | writing one snapshot |
//! | `ctxlog_replay_seconds` | histogram | rebuilding state at open |
//! | `ctxlog_subscriber_lag` | histogram | offsets between the log's end and what a subscriber receives |

/// Commits acknowledged.
pub const COMMITS: &str = "ctxlog_commits_total";
/// Commits refused before reaching the log.
pub const COMMITS_REJECTED: &str = "ctxlog_commits_rejected_total";
/// Events in acknowledged commits.
pub const EVENTS: &str = "ctxlog_events_total";
/// Bytes written to segments.
pub const LOG_BYTES: &str = "ctxlog_log_bytes_total";
/// `fdatasync` calls on segments.
pub const FSYNCS: &str = "ctxlog_fsyncs_total";
/// Records per write.
pub const BATCH_RECORDS: &str = "ctxlog_batch_records";
/// Submit to acknowledgement, seconds.
pub const COMMIT_LATENCY: &str = "ctxlog_commit_latency_seconds";
/// One `fdatasync`, seconds.
pub const FSYNC_LATENCY: &str = "ctxlog_fsync_latency_seconds";
/// Writing one snapshot, seconds.
pub const SNAPSHOT_SECONDS: &str = "ctxlog_snapshot_seconds";
/// Rebuilding state at open, seconds.
pub const REPLAY_SECONDS: &str = "ctxlog_replay_seconds";
/// Offsets a subscriber is behind the log's end when it receives an event.
pub const SUBSCRIBER_LAG: &str = "ctxlog_subscriber_lag";

/// Registers a description and unit for every metric with the installed recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(COMMITS, Unit::Count, "commits acknowledged");
    describe_counter!(
        COMMITS_REJECTED,
        Unit::Count,
        "commits refused before the log"
    );
    describe_counter!(EVENTS, Unit::Count, "events in acknowledged commits");
    describe_counter!(LOG_BYTES, Unit::Bytes, "bytes written to log segments");
    describe_counter!(FSYNCS, Unit::Count, "fdatasync calls on log segments");
    describe_histogram!(BATCH_RECORDS, Unit::Count, "records per write");
    describe_histogram!(COMMIT_LATENCY, Unit::Seconds, "submit to acknowledgement");
    describe_histogram!(FSYNC_LATENCY, Unit::Seconds, "one fdatasync");
    describe_histogram!(SNAPSHOT_SECONDS, Unit::Seconds, "writing one snapshot");
    describe_histogram!(REPLAY_SECONDS, Unit::Seconds, "rebuilding state at open");
    describe_histogram!(
        SUBSCRIBER_LAG,
        Unit::Count,
        "offsets a subscriber is behind"
    );
}
