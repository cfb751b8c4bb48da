//! ctxlog's metrics in Prometheus text format.
//!
//! Installs a Prometheus recorder, registers ctxlog's metric descriptions, does some work on a
//! store in a temporary directory (commits, concurrent writers, a refused commit, a snapshot, a
//! subscription, a reopen), then serves the rendered metrics on `127.0.0.1`.
//!
//! ```text
//! cargo run --example prometheus                          # serve, when run in a terminal
//! curl http://127.0.0.1:<port>/metrics
//! CTXLOG_EXAMPLE_ONESHOT=1 cargo run --example prometheus # print once and exit
//! ```
//!
//! - `CTXLOG_METRICS_PORT`: the port to serve on (default: any free one).
//! - `CTXLOG_METRICS_REQUESTS`: stop after this many requests (default 5).
//! - `CTXLOG_METRICS_SECONDS`: stop after this many seconds (default 15).
//! - `CTXLOG_EXAMPLE_ONESHOT=1`, or a standard output that is not a terminal (CI): print the
//!   metrics once, check them (also through one HTTP request to itself) and exit.

use ctxlog::manager::Filter;
use ctxlog::{create_manager_with_config, Config, ContextManager, Offset, Update};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::error::Error;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Work that moves every metric: commits (some concurrent, so group commit batches them), a
/// refused commit, a snapshot, a subscriber, and a reopen (replay).
async fn work(dir: &std::path::Path) -> Res<ContextManager> {
    let m = create_manager_with_config(Config::new(dir)).await?;
    let mut orders = m.subscribe(Offset::FIRST, Filter::all().prefix("orders"))?;
    m.create("orders").await?;
    for i in 0..50u32 {
        m.set("orders", &format!("o{i}"), &i).await?;
    }
    let writers: Vec<_> = (0..4u32)
        .map(|w| {
            let m = m.clone();
            tokio::spawn(async move {
                for i in 0..25u32 {
                    let u = Update::new().set("orders", format!("w{w}-{i}"), &i)?;
                    m.update(u).await?;
                }
                Ok::<_, ctxlog::Error>(())
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    // Refused: the key does not exist.
    let refused = m.update(Update::new().remove("orders", "missing")).await;
    assert!(refused.is_err(), "a remove of a missing key is refused");
    m.snapshot_now().await?;
    // The subscriber reads everything committed so far.
    for _ in 0..(1 + 50 + 100) {
        match tokio::time::timeout(Duration::from_secs(10), orders.next()).await {
            Ok(Some(Ok(_))) => {}
            other => return Err(format!("subscription stopped early: {other:?}").into()),
        }
    }
    m.close().await?;
    // Reopen: the replay is timed too.
    let m = create_manager_with_config(Config::new(dir)).await?;
    m.set("orders", "after-reopen", &1u8).await?;
    Ok(m)
}

/// The value of an unlabelled counter in Prometheus text.
fn counter_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Checks the rendered text: every ctxlog metric family is there, with its help text, and
/// the commit counter matches the work done.
fn check(text: &str, committed: u64) -> Res<()> {
    for name in [
        ctxlog::telemetry::COMMITS,
        ctxlog::telemetry::EVENTS,
        ctxlog::telemetry::COMMITS_REJECTED,
        ctxlog::telemetry::LOG_BYTES,
        ctxlog::telemetry::FSYNCS,
        ctxlog::telemetry::COMMIT_LATENCY,
        ctxlog::telemetry::SNAPSHOT_SECONDS,
        ctxlog::telemetry::REPLAY_SECONDS,
        ctxlog::telemetry::SUBSCRIBER_LAG,
    ] {
        if !text.contains(&format!("# HELP {name} ")) {
            return Err(format!("{name} is missing from the rendered metrics").into());
        }
    }
    let commits = counter_value(text, ctxlog::telemetry::COMMITS);
    if commits != Some(committed as f64) {
        return Err(format!("ctxlog_commits_total is {commits:?}, expected {committed}").into());
    }
    Ok(())
}

/// Answers one HTTP request with the current metrics.
fn answer(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The headers, up to the blank line.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let (status, body) = match request_line.split_whitespace().nth(1) {
        Some("/metrics" | "/") => ("200 OK", handle.render()),
        _ => ("404 Not Found", "try /metrics\n".to_string()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// Serves until `requests` were answered or `deadline` passed.
fn serve(
    listener: TcpListener,
    handle: &PrometheusHandle,
    requests: u64,
    deadline: Instant,
) -> Res<u64> {
    listener.set_nonblocking(true)?;
    let mut served = 0;
    while served < requests && Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = answer(stream, handle) {
                    eprintln!("request failed: {e}");
                }
                served += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(served)
}

/// One GET of `/metrics`, as a scraper would.
fn scrape(port: u16) -> Res<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or("no end of headers in the response")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("unexpected response: {head}").into());
    }
    Ok(body.to_string())
}

#[tokio::main]
async fn main() -> Res<()> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    ctxlog::telemetry::describe();

    let dir = tempfile::tempdir()?;
    let m = work(dir.path()).await?;
    // Every acknowledged commit is counted: 1 create, 50 sets, 4 x 25 concurrent, 1 after reopen.
    let committed = 1 + 50 + 100 + 1;

    let oneshot = std::env::var("CTXLOG_EXAMPLE_ONESHOT").is_ok_and(|v| v == "1")
        || !std::io::stdout().is_terminal();
    let port = env_u64("CTXLOG_METRICS_PORT").unwrap_or(0);
    let port =
        u16::try_from(port).map_err(|_| format!("CTXLOG_METRICS_PORT {port} is not a port"))?;
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    let port = listener.local_addr()?.port();

    if oneshot {
        let text = handle.render();
        println!("{text}");
        assert!(text.contains("ctxlog_commits_total"), "{text}");
        check(&text, committed)?;
        // The serving path too: one request from this process to itself.
        let server = {
            let handle = handle.clone();
            let deadline = Instant::now() + Duration::from_secs(10);
            tokio::task::spawn_blocking(move || serve(listener, &handle, 1, deadline))
        };
        let body = tokio::task::spawn_blocking(move || scrape(port)).await??;
        check(&body, committed)?;
        if server.await?? != 1 {
            return Err("the server did not answer the request".into());
        }
        eprintln!(
            "metrics checked: {} lines, served once on 127.0.0.1:{port}",
            text.lines().count()
        );
    } else {
        let requests = env_u64("CTXLOG_METRICS_REQUESTS").unwrap_or(5);
        let seconds = env_u64("CTXLOG_METRICS_SECONDS").unwrap_or(15);
        println!("serving ctxlog metrics on http://127.0.0.1:{port}/metrics");
        println!("(for {requests} requests or {seconds} s; CTXLOG_EXAMPLE_ONESHOT=1 prints them instead)");
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let handle = handle.clone();
        let served =
            tokio::task::spawn_blocking(move || serve(listener, &handle, requests, deadline))
                .await??;
        println!("served {served} request(s)");
    }
    m.close().await?;
    Ok(())
}
