//! `--inline-answers learned`: in a shape with workers, a service's routes that prove cheap on
//! the workers are answered by the readers, and a route that stops being cheap goes back.
//! Where a request ran is read from the threads' counters: a worker counts what it answered.

mod util;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use backlog_server::{InlineAnswers, Server};
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::*;

const LIMIT: Duration = Duration::from_millis(1);
const SLOW: Duration = Duration::from_millis(5);

#[derive(Default)]
struct Flags {
    /// `/turns` spins [`SLOW`] while set.
    slow: AtomicBool,
}

fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

fn router(flags: Arc<Flags>) -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/spin",
            get(|| async {
                spin(SLOW);
                "spun"
            }),
        )
        .route(
            "/sleepy",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                "slept"
            }),
        )
        .route(
            "/turns",
            get(|State(flags): State<Arc<Flags>>| async move {
                if flags.slow.load(Ordering::Relaxed) {
                    spin(SLOW);
                }
                "turned"
            }),
        )
        .with_state(flags)
}

/// A reader and two workers, the reader learning cheap routes.
fn builder() -> backlog_server::ServerBuilder {
    Server::builder()
        .io(backlog_server::Io::from_env())
        .listen("127.0.0.1:0".parse().unwrap())
        .topology("listeners=1 readers=1 workers=2".parse().unwrap())
        .inline_answers(InlineAnswers::Learned)
        // A debug build's first poll of `/` runs 110–180 µs; the slow routes run 5 ms.
        .inline_limit(LIMIT)
}

fn start() -> (Server, Arc<Flags>) {
    let flags = Arc::new(Flags::default());
    let server = builder()
        .bind_service(router(flags.clone()))
        .expect("server starts");
    (server, flags)
}

/// 300 GETs of a cheap `path`: its first go to the workers, the rest to the reader. The
/// requests the workers answered.
fn learn(server: &Server, c: &mut TcpStream, path: &str, body: &str) -> u64 {
    gets(c, path, 300, body);
    let (workers, _) = on_workers(server);
    // 16 cheap first polls in a row earn the reader; a debug build's polls now and then
    // run past the mark, so some more than 16 may go to the workers, never most.
    assert!(
        workers >= 16,
        "{workers}: a route proves itself on the workers first"
    );
    assert!(
        workers < 150,
        "{workers} of 300 on the workers: never learned"
    );
    workers
}

/// Requests the workers answered, and routes the readers sent back to them.
fn on_workers(server: &Server) -> (u64, u64) {
    let threads = server.stats().snapshot();
    let workers = threads
        .iter()
        .filter(|t| t.name.starts_with("worker-"))
        .map(|t| t.requests)
        .sum();
    (workers, threads.iter().map(|t| t.sent_back).sum())
}

/// `n` GETs of `path` one after another on one connection, each answered `body`.
fn gets(c: &mut TcpStream, path: &str, n: usize, body: &str) {
    let mut r = BufReader::new(c.try_clone().unwrap());
    for i in 0..n {
        // One write: `write!` would send the pieces apart, and Nagle would hold the rest.
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        c.write_all(req.as_bytes()).unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.status, 200, "{path} #{i}");
        assert_eq!(resp.body, body.as_bytes(), "{path} #{i}");
    }
}

fn connect(server: &Server) -> TcpStream {
    let c = TcpStream::connect(server.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

#[test]
fn a_cheap_route_moves_to_the_reader_and_slow_or_waiting_ones_stay_on_the_workers() {
    let (server, _) = start();
    let mut c = connect(&server);
    let workers = learn(&server, &mut c, "/", "hello");
    gets(&mut c, "/spin", 30, "spun");
    gets(&mut c, "/sleepy", 30, "slept");
    let (after, sent_back) = on_workers(&server);
    assert_eq!(
        after - workers,
        60,
        "a slow or waiting route never leaves the workers"
    );
    assert_eq!(sent_back, 0);
    server.stop();
}

#[test]
fn a_route_that_turns_slow_goes_back_to_the_workers_after_at_most_two_answers() {
    let (server, flags) = start();
    let mut c = connect(&server);
    let learned = learn(&server, &mut c, "/turns", "turned");
    // Make sure it is on the reader now: the next ones do not reach a worker.
    gets(&mut c, "/turns", 20, "turned");
    let (before, _) = on_workers(&server);
    assert!(before - learned < 20, "the route is answered on the reader");

    flags.slow.store(true, Ordering::Relaxed);
    gets(&mut c, "/turns", 10, "turned");
    let (after, sent_back) = on_workers(&server);
    assert_eq!(sent_back, 1, "one strike");
    assert!(
        after - before >= 8,
        "{}: at most two slow answers on the reader, the rest on the workers",
        after - before
    );
    server.stop();
}

#[test]
fn answers_from_the_reader_and_from_the_workers_come_back_in_request_order() {
    let (server, _) = start();
    let mut c = connect(&server);
    learn(&server, &mut c, "/", "hello");
    let mut r = BufReader::new(c.try_clone().unwrap());
    let order = ["/spin", "/", "/sleepy", "/", "/spin", "/"];
    let mut batch = String::new();
    for path in order {
        batch.push_str(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
    }
    c.write_all(batch.as_bytes()).unwrap();
    for path in order {
        let resp = read_response(&mut r, false).unwrap();
        let want = match path {
            "/spin" => "spun",
            "/sleepy" => "slept",
            _ => "hello",
        };
        assert_eq!(resp.body, want.as_bytes(), "{path} answered in its turn");
    }
    server.stop();
}

#[test]
fn a_native_handlers_cheap_route_moves_to_the_reader_and_a_slow_one_stays() {
    let app = backlog_server::Router::new()
        .get("/", |_req: backlog_server::Request| {
            backlog_server::Response::text(200, "hello")
        })
        .get("/spin", |_req: backlog_server::Request| {
            spin(SLOW);
            backlog_server::Response::text(200, "spun")
        });
    let server = builder().bind(app).expect("server starts");
    let mut c = connect(&server);
    let workers = learn(&server, &mut c, "/", "hello");
    gets(&mut c, "/spin", 20, "spun");
    let (after, sent_back) = on_workers(&server);
    assert_eq!(after - workers, 20, "a slow route never leaves the workers");
    assert_eq!(sent_back, 0);
    server.stop();
}
