//! Idempotency-Key and the comments API against the real binary, on SQLite and (when
//! `BACKLOG_TEST_PG_URL` names a throwaway server, as `scripts/test` arranges) PostgreSQL:
//! every status, concurrency, kill -9, two instances on one database, a store outage.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod util;

use util::{Served, BIN};

static UNIQUE: AtomicU64 = AtomicU64::new(0);

fn unique(what: &str) -> String {
    format!(
        "{what}-{}-{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

/// Where a test's server keeps its data: a fresh SQLite directory, or the shared test
/// PostgreSQL.
#[derive(Clone)]
enum Backend {
    Sqlite(std::sync::Arc<testkit::TempDir>),
    Postgres(String),
}

fn sqlite() -> Backend {
    Backend::Sqlite(std::sync::Arc::new(testkit::scratch("backlog-idem-")))
}

/// The shared test PostgreSQL. Its tests are `#[ignore]`d, so a plain `cargo test` reports
/// them as skipped; scripts/test starts a throwaway cluster and runs them.
fn postgres() -> Backend {
    Backend::Postgres(pg_url())
}

fn pg_url() -> String {
    std::env::var("BACKLOG_TEST_PG_URL")
        .expect("BACKLOG_TEST_PG_URL: PostgreSQL tests need a server (scripts/test starts one)")
}

/// Each check, once on SQLite and once (ignored unless asked for) on PostgreSQL.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[test]
            fn $name() {
                super::$name(super::sqlite())
            })*
        }
        mod on_postgres {
            $(#[test]
            #[ignore = "needs PostgreSQL: BACKLOG_TEST_PG_URL (scripts/test starts one)"]
            fn $name() {
                super::$name(super::postgres())
            })*
        }
    };
}

on_both_stores!(
    every_status_of_the_middleware,
    in_flight_is_409_required_key_is_400_and_keys_expire,
    without_a_key_a_retried_post_inserts_twice,
    a_hundred_concurrent_posts_with_one_key_make_one_row,
    kill_9_in_flight_then_retry_runs_once
);

/// `backlog serve` on `backend` with `extra` flags (reuseport unless a model is given).
fn start(backend: &Backend, extra: &[&str]) -> Served {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--threads", "2"]);
    if !extra.contains(&"--model") {
        cmd.args(["--model", "reuseport"]);
    }
    match backend {
        Backend::Sqlite(dir) => cmd.arg("--data").arg(dir.path()),
        Backend::Postgres(url) => cmd.args(["--store", url]),
    };
    cmd.args(extra);
    Served::spawn(cmd)
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let resp = testkit::request(addr, method, target, headers, body.as_bytes());
    Answer {
        status: resp.status,
        body: resp.text(),
        headers: resp.headers,
    }
}

fn post(addr: SocketAddr, key: Option<&str>, text: &str) -> Answer {
    let body = serde_json::json!({ "text": text }).to_string();
    let quoted = key.map(|k| format!("\"{k}\""));
    let headers: Vec<(&str, &str)> = quoted
        .iter()
        .map(|k| ("Idempotency-Key", k.as_str()))
        .collect();
    http(addr, "POST", "/comments", &headers, &body)
}

/// How many comments carry `text`.
fn rows_with(addr: SocketAddr, text: &str) -> usize {
    let mut after = 0i64;
    let mut n = 0;
    loop {
        let a = http(
            addr,
            "GET",
            &format!("/comments?after={after}&limit=1000"),
            &[],
            "",
        );
        assert_eq!(a.status, 200, "{}", a.body);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&a.body).unwrap();
        if rows.is_empty() {
            return n;
        }
        n += rows.iter().filter(|r| r["text"] == text).count();
        after = rows.last().unwrap()["id"].as_i64().unwrap();
    }
}

fn every_status_of_the_middleware(backend: Backend) {
    let s = start(&backend, &["--idempotency-scope-header", "X-Client"]);
    let (key, text) = (unique("key"), unique("text"));
    let first = post(s.addr, Some(&key), &text);
    assert_eq!(first.status, 201, "{}", first.body);
    assert!(first.header("Idempotent-Replayed").is_none());
    let comment: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(comment["text"], text.as_str());
    assert!(comment["id"].is_i64() && comment["created_at"].is_string());

    // Replayed byte for byte.
    let again = post(s.addr, Some(&key), &text);
    assert_eq!(again.status, 201);
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("Location"), first.header("Location"));
    assert_eq!(rows_with(s.addr, &text), 1);

    // Same key, different request: 422, problem+json.
    let other = post(s.addr, Some(&key), &unique("different"));
    assert_eq!(other.status, 422);
    assert_eq!(
        other.header("Content-Type"),
        Some("application/problem+json")
    );

    // Keys are scoped per client when the scope header is given.
    let scoped_text = unique("scoped");
    let scoped_key = format!("\"{}\"", unique("shared-key"));
    let body = serde_json::json!({ "text": scoped_text }).to_string();
    for client in ["alice", "bob", "alice"] {
        let a = http(
            s.addr,
            "POST",
            "/comments",
            &[("Idempotency-Key", &scoped_key), ("X-Client", client)],
            &body,
        );
        assert_eq!(a.status, 201);
    }
    assert_eq!(rows_with(s.addr, &scoped_text), 2, "one per client");

    // Malformed keys, and bodies refused before the handler: 400, nothing stored, and the
    // key stays free for a corrected retry.
    let bad = unique("bad");
    for raw in [
        "two words",
        "a\\b",
        "\"\"",
        &format!("\"{}\"", "k".repeat(256)),
    ] {
        let a = http(
            s.addr,
            "POST",
            "/comments",
            &[("Idempotency-Key", raw)],
            &format!("{{\"text\":\"{bad}\"}}"),
        );
        assert_eq!(a.status, 400, "{raw}");
    }
    // Two keys, on one line or on two (the same list, RFC 9110 §5.3): 400 either way.
    let (k1, k2) = (unique("list"), unique("list"));
    for fields in [
        vec![("Idempotency-Key", format!("\"{k1}\", \"{k2}\""))],
        vec![
            ("Idempotency-Key", k1.clone()),
            ("Idempotency-Key", k2.clone()),
        ],
    ] {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let a = http(
            s.addr,
            "POST",
            "/comments",
            &fields,
            &format!("{{\"text\":\"{bad}\"}}"),
        );
        assert_eq!(a.status, 400, "{fields:?}");
    }
    assert_eq!(rows_with(s.addr, &bad), 0, "nothing stored");
    // A bare key (as Stripe's clients send it) is the same key as its quoted form.
    let (bare, bare_text) = (unique("bare"), unique("bare"));
    let body = format!("{{\"text\":\"{bare_text}\"}}");
    let first = http(
        s.addr,
        "POST",
        "/comments",
        &[("Idempotency-Key", &bare)],
        &body,
    );
    assert_eq!(first.status, 201);
    let quoted = format!("\"{bare}\"");
    let again = http(
        s.addr,
        "POST",
        "/comments",
        &[("Idempotency-Key", &quoted)],
        &body,
    );
    assert_eq!(again.status, 201);
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(rows_with(s.addr, &bare_text), 1);

    let retry_key = unique("retry");
    assert_eq!(
        http(
            s.addr,
            "POST",
            "/comments",
            &[("Idempotency-Key", &format!("\"{retry_key}\""))],
            "not json"
        )
        .status,
        400
    );
    assert_eq!(post(s.addr, Some(&retry_key), &unique("fixed")).status, 201);
    assert_eq!(rows_with(s.addr, &bad), 0);

    // Upsert: idempotent by nature.
    let client_id = unique("client");
    let put = |t: &str| {
        http(
            s.addr,
            "PUT",
            &format!("/comments/{client_id}"),
            &[],
            &format!("{{\"text\":\"{t}\"}}"),
        )
    };
    let created = put("v1");
    assert_eq!(created.status, 201);
    assert_eq!(
        created.header("Location"),
        Some(format!("/comments/{client_id}").as_str())
    );
    let rewritten = put("v2");
    assert_eq!(rewritten.status, 200);
    assert!(rewritten.body.contains("v2"));
    let read = http(s.addr, "GET", &format!("/comments/{client_id}"), &[], "");
    assert_eq!(read.status, 200);
    assert!(read.body.contains("v2"), "{}", read.body);

    // A POST's Location is readable, and PUT on it rewrites that comment, not a new one.
    let posted_text = unique("posted");
    let posted = post(s.addr, None, &posted_text);
    assert_eq!(posted.status, 201);
    let location = posted.header("Location").unwrap().to_string();
    let read = http(s.addr, "GET", &location, &[], "");
    assert_eq!(read.status, 200, "{location}: {}", read.body);
    assert!(read.body.contains(&posted_text), "{}", read.body);
    let edited_text = unique("edited");
    let edited = http(
        s.addr,
        "PUT",
        &location,
        &[],
        &format!("{{\"text\":\"{edited_text}\"}}"),
    );
    assert_eq!(edited.status, 200, "{}", edited.body);
    assert_eq!(rows_with(s.addr, &edited_text), 1);
    assert_eq!(rows_with(s.addr, &posted_text), 0);
    // A number the server never gave is not created by PUT, and reads as 404.
    let missing = "/comments/999999999";
    let refused = http(s.addr, "PUT", missing, &[], "{\"text\":\"x\"}");
    assert_eq!(refused.status, 404, "{}", refused.body);
    assert_eq!(http(s.addr, "GET", missing, &[], "").status, 404);
    assert_eq!(
        http(s.addr, "GET", "/comments/no-such", &[], "").status,
        404
    );
    // The list's numbers: a limit past 1,000 is 1,000; one that is not a number is refused.
    assert_eq!(
        http(s.addr, "GET", "/comments?after=0&limit=100000", &[], "").status,
        200
    );
    for query in ["after=abc", "limit=-", "limit=", "after=1&limit=1.5"] {
        let refused = http(s.addr, "GET", &format!("/comments?{query}"), &[], "");
        assert_eq!(refused.status, 400, "{query}: {}", refused.body);
        assert!(
            refused.body.contains("must be an integer"),
            "{}",
            refused.body
        );
    }
}

fn in_flight_is_409_required_key_is_400_and_keys_expire(backend: Backend) {
    let s = start(
        &backend,
        &[
            "--comment-delay",
            "800ms",
            "--idempotency-ttl",
            "2s",
            "--require-idempotency-key",
        ],
    );
    let addr = s.addr;
    let (key, text) = (unique("key"), unique("text"));
    let (k2, t2) = (key.clone(), text.clone());
    let first = std::thread::spawn(move || post(addr, Some(&k2), &t2));
    std::thread::sleep(Duration::from_millis(300));
    let during = post(addr, Some(&key), &text);
    assert_eq!(during.status, 409, "{}", during.body);
    assert_eq!(first.join().unwrap().status, 201);

    let none = post(addr, None, &unique("nokey"));
    assert_eq!(none.status, 400);
    assert!(none.body.contains("Idempotency-Key"));

    // After the TTL the key is free again: the same request runs again.
    std::thread::sleep(Duration::from_millis(2200));
    let later = post(addr, Some(&key), &text);
    assert_eq!(later.status, 201);
    assert!(later.header("Idempotent-Replayed").is_none());
    assert_eq!(rows_with(addr, &text), 2);
}

fn without_a_key_a_retried_post_inserts_twice(backend: Backend) {
    let s = start(&backend, &[]);
    let text = unique("dup");
    assert_eq!(post(s.addr, None, &text).status, 201);
    assert_eq!(post(s.addr, None, &text).status, 201);
    assert_eq!(
        rows_with(s.addr, &text),
        2,
        "the seeds' point: retries duplicate"
    );
}

fn a_hundred_concurrent_posts_with_one_key_make_one_row(backend: Backend) {
    for model in ["reuseport", "pool"] {
        let s = start(&backend, &["--model", model]);
        let (key, text) = (unique("key"), unique("burst"));
        let threads: Vec<_> = (0..20)
            .map(|_| {
                let (addr, key, text) = (s.addr, key.clone(), text.clone());
                std::thread::spawn(move || {
                    (0..5)
                        .map(|_| post(addr, Some(&key), &text).status)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let statuses: Vec<u16> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(statuses.len(), 100);
        assert!(
            statuses.iter().all(|s| *s == 201 || *s == 409),
            "{statuses:?}"
        );
        assert_eq!(rows_with(s.addr, &text), 1, "{model}");
        let created = statuses.iter().filter(|s| **s == 201).count();
        eprintln!("{model}: 100 concurrent POSTs, one key: {created} × 201 (first or replay), {} × 409, 1 row", 100 - created);
    }
}

fn kill_9_in_flight_then_retry_runs_once(backend: Backend) {
    let (key, text) = (unique("key"), unique("crash"));
    let opts = ["--comment-delay", "3s", "--idempotency-lease", "1s"];
    let mut s = start(&backend, &opts);
    let addr = s.addr;
    let (k, t) = (key.clone(), text.clone());
    let doomed = std::thread::spawn(move || {
        let body = serde_json::json!({ "text": t }).to_string();
        let mut c = TcpStream::connect(addr).unwrap();
        let req = format!("POST /comments HTTP/1.1\r\nHost: t\r\nIdempotency-Key: \"{k}\"\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        c.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        out
    });
    std::thread::sleep(Duration::from_millis(500));
    s.kill9(); // the handler is inside its transaction, holding the key's lease
    assert!(
        doomed.join().unwrap().is_empty(),
        "no answer from a killed server"
    );

    let s2 = start(&backend, &["--idempotency-lease", "1s"]);
    // The lease outlives the crash by at most 1 s: 409 until then, then the retry runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let a = post(s2.addr, Some(&key), &text);
        if a.status != 409 {
            break a;
        }
        assert!(Instant::now() < deadline, "the lease never expired");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(
        rows_with(s2.addr, &text),
        1,
        "neither the crashed insert nor a duplicate"
    );

    // Killed after the commit: the retry replays.
    let (key2, text2) = (unique("key"), unique("committed"));
    assert_eq!(post(s2.addr, Some(&key2), &text2).status, 201);
    drop(s2);
    let s3 = start(&backend, &[]);
    let replay = post(s3.addr, Some(&key2), &text2);
    assert_eq!(replay.status, 201);
    assert_eq!(replay.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(rows_with(s3.addr, &text2), 1);
}

#[test]
#[ignore = "needs PostgreSQL: BACKLOG_TEST_PG_URL (scripts/test starts one)"]
fn two_instances_on_one_postgres_answer_a_retried_request_once() {
    let url = pg_url();
    let backend = Backend::Postgres(url);
    let a = start(&backend, &["--model", "dispatch"]);
    let b = start(&backend, &["--model", "pool"]);
    let (key, text) = (unique("key"), unique("fleet"));
    let threads: Vec<_> = (0..10)
        .map(|i| {
            let addr = if i % 2 == 0 { a.addr } else { b.addr };
            let (key, text) = (key.clone(), text.clone());
            std::thread::spawn(move || post(addr, Some(&key), &text).status)
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    // Retries after the dust settles: all replays, from either instance.
    for addr in [a.addr, b.addr] {
        let r = post(addr, Some(&key), &text);
        assert_eq!(r.status, 201);
        assert_eq!(r.header("Idempotent-Replayed"), Some("true"));
    }
    assert_eq!(rows_with(a.addr, &text), 1);
    assert_eq!(rows_with(b.addr, &text), 1);
}

/// A PostgreSQL cluster of the test's own (so stopping it disturbs no other test).
struct OwnCluster {
    dir: std::path::PathBuf,
    url: String,
    ctl: String,
}

impl OwnCluster {
    const SCRIPT: &'static str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg-throwaway");

    fn start() -> OwnCluster {
        let dir = std::env::temp_dir().join(unique("backlog-pg-outage"));
        let out = Command::new(Self::SCRIPT)
            .arg("start")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = String::from_utf8_lossy(&out.stdout).into_owned();
        let value = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap()
                .trim_matches('\'')
                .to_string()
        };
        OwnCluster {
            url: value("BACKLOG_TEST_PG_URL"),
            ctl: value("BACKLOG_TEST_PG_CTL"),
            dir,
        }
    }

    fn ctl(&self, action: &str) {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!("{} {action}", self.ctl))
            .status()
            .unwrap()
            .success();
        assert!(ok, "pg_ctl {action}");
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = Command::new(Self::SCRIPT)
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

#[test]
#[ignore = "needs PostgreSQL binaries and a throwaway cluster (scripts/test runs it)"]
fn a_postgres_outage_is_503_for_the_store_and_recovers_by_itself() {
    let pg = OwnCluster::start();
    let mut s = start(&Backend::Postgres(pg.url.clone()), &[]);
    assert_eq!(
        post(s.addr, Some(&unique("k")), &unique("before")).status,
        201
    );
    pg.ctl("stop");
    let down = post(s.addr, Some(&unique("k")), &unique("during"));
    let list = http(s.addr, "GET", "/comments", &[], "");
    let hello = http(s.addr, "GET", "/", &[], "");
    // Many refused requests, few log lines: one warning a second, with the database's cause.
    let outage = Instant::now();
    let mut refused = 2;
    while outage.elapsed() < Duration::from_millis(1300) && refused < 5000 {
        let during = post(s.addr, Some(&unique("k")), &unique("during"));
        assert_eq!(during.status, 503);
        refused += 1;
    }
    pg.ctl("start");
    assert_eq!(down.status, 503, "{}", down.body);
    assert_eq!(down.header("Retry-After"), Some("1"));
    assert_eq!(list.status, 503);
    assert_eq!(
        (hello.status, hello.body.as_str()),
        (200, "Hello, World!\n")
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let after = post(s.addr, Some(&unique("k")), &unique("after"));
        if after.status == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never recovered: {}",
            after.status
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let warnings: Vec<String> = {
        s.drain();
        s.seen
            .iter()
            .filter(|l| l.contains("WARN"))
            .cloned()
            .collect()
    };
    eprintln!(
        "{refused} requests refused, {} warnings: {warnings:#?}",
        warnings.len()
    );
    assert!(
        (2..=4).contains(&warnings.len()),
        "{} warnings for {refused} refused requests over ~1.3 s: {warnings:#?}",
        warnings.len()
    );
    assert!(
        warnings
            .iter()
            .all(|w| w.contains("postgres: ") && !w.trim_end().ends_with("db error")),
        "the cause is shown: {warnings:#?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("suppressed=")),
        "{warnings:#?}"
    );
}

#[test]
fn an_unreachable_store_at_start_is_one_line_and_exit_2() {
    let port = testkit::free_addr().port();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &format!("postgres://postgres@127.0.0.1:{port}/x"),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("store"), "{err}");
}
