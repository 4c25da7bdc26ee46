//! The embedded store under concurrent writes: 64 keep-alive clients POST with unique
//! Idempotency-Keys to a real server whose handler inserts a row in the transaction that
//! records the response (as the built-in app's `POST /comments` does), on SQLite with
//! `synchronous=FULL`. Then the floor on the same disk: one connection inserting one row
//! per transaction in a loop, as fast as the disk's fsync allows.
//!
//! `cargo bench -p backlog-idempotency --bench group_commit` (60 s; `GROUP_COMMIT_SECS=N` for
//! another duration). Prints status counts, latency percentiles and writes/s for both.
//! Targets: no 503, p99 ≤ 50 ms.

#![allow(missing_docs)]

use backlog_server::tuning::DEFAULT_BLOCKING_THREADS;
use backlog_server::{Model, Request, Response, Router, Server};
use hdrhistogram::Histogram;
use idempotency::{IdempotencyConfig, Idempotent, SqliteStore, StoreError, Transactional};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: usize = 64;

fn main() {
    let secs: u64 = std::env::var("GROUP_COMMIT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let run = Duration::from_secs(secs);
    // The disk the server's data would be on (not a tmpfs), removed afterwards.
    let dir = tempfile::Builder::new()
        .prefix("group-commit-bench-")
        .tempdir_in(".")
        .expect("a scratch directory");

    // The server's default blocking pool, then one thread per client: the pool bounds how
    // many writes can wait in one batch.
    let rates: Vec<(usize, f64)> = [DEFAULT_BLOCKING_THREADS, CLIENTS]
        .into_iter()
        .enumerate()
        .map(|(i, blocking)| {
            let sub = dir.path().join(i.to_string());
            (blocking, serve_and_post(&sub, blocking, run))
        })
        .collect();
    let floor = plain_insert_loop(dir.path(), run.min(Duration::from_secs(15)));
    println!("floor: one connection, one INSERT per transaction: {floor:.0} writes/s");
    for (blocking, rate) in rates {
        println!(
            "  {blocking} blocking threads: POSTs/s ÷ floor = {:.2}",
            rate / floor
        );
    }
}

/// Serve the insert handler with `blocking` blocking threads and post to it from
/// [`CLIENTS`] clients for `run`; returns POSTs answered per second.
fn serve_and_post(dir: &std::path::Path, blocking: usize, run: Duration) -> f64 {
    let store = SqliteStore::open(dir).expect("store");
    store
        .transact(|tx| {
            tx.execute_batch("CREATE TABLE rows (id INTEGER PRIMARY KEY, v TEXT)")?;
            Ok(())
        })
        .expect("table");
    let insert =
        |_req: &Request, tx: &mut rusqlite::Savepoint<'_>| -> Result<Response, StoreError> {
            tx.execute("INSERT INTO rows (v) VALUES (?1)", ["x"])?;
            let id = tx.last_insert_rowid();
            Ok(Response::json_bytes(201, format!("{{\"id\":{id}}}")))
        };
    let app = Router::new().post(
        "/rows",
        Idempotent::transactional(store, IdempotencyConfig::default(), insert),
    );
    let server = Server::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .model(Model::Dispatch)
        .blocking_threads(blocking)
        .bind(app)
        .expect("server");
    let addr = server.local_addr();

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut hist = Histogram::<u64>::new(3).unwrap();
                let mut statuses = BTreeMap::<u16, u64>::new();
                let (mut w, mut r) = testkit::open(addr);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let req = format!(
                        "POST /rows HTTP/1.1\r\nHost: b\r\nIdempotency-Key: c{c}-{n}\r\nContent-Length: 2\r\n\r\n{{}}"
                    );
                    let t0 = Instant::now();
                    w.write_all(req.as_bytes()).unwrap();
                    let resp = testkit::read_response(&mut r, false).unwrap();
                    hist.record(t0.elapsed().as_micros() as u64).unwrap();
                    *statuses.entry(resp.status).or_default() += 1;
                    if resp.header("connection") == Some("close") {
                        (w, r) = testkit::open(addr);
                    }
                }
                (hist, statuses)
            })
        })
        .collect();
    std::thread::sleep(run);
    stop.store(true, Ordering::Relaxed);
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let mut statuses = BTreeMap::<u16, u64>::new();
    for c in clients {
        let (h, s) = c.join().unwrap();
        hist.add(h).unwrap();
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
    }
    server.stop();
    let total: u64 = statuses.values().sum();
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{CLIENTS} clients, {} s, SQLite synchronous=FULL, group commit, {blocking} blocking threads",
        run.as_secs()
    );
    println!("  statuses: {statuses:?}");
    println!(
        "  latency ms: p50 {:.1}  p99 {:.1}  max {:.1}",
        ms(0.5),
        ms(0.99),
        hist.max() as f64 / 1000.0
    );
    let rate = total as f64 / run.as_secs_f64();
    println!("  writes/s (POSTs answered): {rate:.0}");
    let no_503 = !statuses.contains_key(&503);
    println!(
        "  targets: no 503 {}  p99 ≤ 50 ms {}",
        if no_503 { "met" } else { "MISSED" },
        if ms(0.99) <= 50.0 { "met" } else { "MISSED" }
    );
    rate
}

/// Inserts, each its own transaction on one connection, for `run`: what the disk gives one
/// writer that waits for every fsync.
fn plain_insert_loop(dir: &std::path::Path, run: Duration) -> f64 {
    let conn = rusqlite::Connection::open(dir.join("floor.sqlite3")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < run {
        conn.execute("INSERT INTO t (v) VALUES ('x')", []).unwrap();
        n += 1;
    }
    n as f64 / t0.elapsed().as_secs_f64()
}
