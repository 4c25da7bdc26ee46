//! Helpers for integration tests: real servers on ephemeral loopback ports, raw TCP clients.

#![allow(dead_code)]

use backlog_server::{
    AcceptStrategy, Balance, Model, Request, Response, Router, Server, ServerBuilder,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
pub use testkit::*;

pub mod sched;

/// This process's resident set, in KiB.
pub fn rss_kib() -> u64 {
    testkit::process::rss_kib(None)
}

/// Every model and every accept / balance variant, two threads each.
pub fn all_configs() -> Vec<(String, ServerBuilder)> {
    let base = || {
        Server::builder()
            .io(backlog_server::Io::from_env())
            .listen("127.0.0.1:0".parse().unwrap())
            .threads(2)
            .workers(2)
    };
    let mut out = vec![
        ("single".to_string(), base().model(Model::Single)),
        ("pool".to_string(), base().model(Model::Pool)),
        ("reuseport".to_string(), base().model(Model::Reuseport)),
    ];
    for b in [Balance::RoundRobin, Balance::LeastConns, Balance::P2c] {
        out.push((
            format!("dispatch/{}", b.name()),
            base().model(Model::Dispatch).balance(b),
        ));
    }
    for a in [
        AcceptStrategy::Exclusive,
        AcceptStrategy::Mutex,
        AcceptStrategy::Herd,
    ] {
        out.push((
            format!("shared/{}", a.name()),
            base().model(Model::Shared).accept(a),
        ));
    }
    out
}

/// The five models, as presets.
pub const MODELS: [Model; 5] = [
    Model::Single,
    Model::Dispatch,
    Model::Pool,
    Model::Shared,
    Model::Reuseport,
];

/// A builder for model `m` on an ephemeral loopback port, two threads and two workers.
pub fn builder(m: Model) -> ServerBuilder {
    Server::builder()
        .io(backlog_server::Io::from_env())
        .listen("127.0.0.1:0".parse().unwrap())
        .model(m)
        .threads(2)
        .workers(2)
}

/// Each model's name and builder.
pub fn models() -> Vec<(&'static str, ServerBuilder)> {
    MODELS.into_iter().map(|m| (m.name(), builder(m))).collect()
}

/// The test application: `/` hello, `/echo` echoes the body, `/seq/...` answers with its own
/// target (so order can be checked), `/work?spin_us=N` burns CPU, `/panic` panics, `/big`
/// answers 64 KiB.
pub fn app() -> Router {
    let echo = |req: Request| Response::text(200, req.body().clone());
    let seq = |req: Request| Response::text(200, req.target().to_string());
    Router::new()
        .get("/", |_req: Request| Response::text(200, "Hello, World!\n"))
        .post("/echo", echo)
        .prefix(backlog_server::Method::Get, "/seq/", seq)
        .get("/work", |req: Request| {
            let us: u64 = req
                .query_param("spin_us")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let start = Instant::now();
            while start.elapsed() < Duration::from_micros(us) {
                std::hint::spin_loop();
            }
            Response::text(200, "worked\n")
        })
        .get("/panic", |_req: Request| -> Response {
            panic!("test handler panic")
        })
        .get(
            "/sleep",
            backlog_server::Blocking(|req: Request| {
                let ms: u64 = req
                    .query_param("ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                std::thread::sleep(Duration::from_millis(ms));
                Response::text(200, format!("slept {ms}\n"))
            }),
        )
        .get("/big", |_req: Request| {
            static BIG: [u8; 64 * 1024] = [b'b'; 64 * 1024];
            Response::new(200).body(&BIG[..])
        })
}

/// A running server that stops when dropped.
pub struct TestServer {
    server: Option<Server>,
    pub addr: SocketAddr,
}

impl TestServer {
    pub fn start(builder: ServerBuilder) -> TestServer {
        let server = builder.bind(app()).expect("server starts");
        let addr = server.local_addr();
        TestServer {
            server: Some(server),
            addr,
        }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    pub fn stats(&self) -> Vec<backlog_server::stats::ThreadSnapshot> {
        self.server().stats().snapshot()
    }

    /// Connections open across every thread.
    pub fn open(&self) -> u64 {
        self.stats().iter().map(|t| t.open).sum()
    }

    /// Connections the clients abandoned, across every thread.
    pub fn aborted(&self) -> u64 {
        self.stats().iter().map(|t| t.aborted).sum()
    }

    /// Wait (5 s at most) until no connection is open.
    pub fn wait_all_closed(&self, model: &str) -> Duration {
        wait_until(
            &format!("{model}: every connection closed"),
            Duration::from_secs(5),
            || self.open() == 0,
        )
    }

    pub fn stop(mut self) -> Arc<backlog_server::stats::StatsRegistry> {
        self.server.take().unwrap().stop()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
        }
    }
}

/// How long a plain `GET /` takes on a fresh connection, a moment after slow calls were
/// started: it must not wait behind them.
pub fn time_a_fast_get_beside_slow_calls(addr: SocketAddr) -> Duration {
    std::thread::sleep(Duration::from_millis(30));
    let t0 = Instant::now();
    assert_eq!(
        roundtrip(addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").status,
        200
    );
    t0.elapsed()
}

/// One connection pipelines slow, fast, slow, fast requests: with workers the fast ones finish
/// first, yet the answers must come back in request order.
pub fn slow_and_fast_pipelined_come_back_in_order(addr: SocketAddr) {
    use std::io::{BufReader, Write};
    let c = connect(addr);
    (&c).write_all(
        b"GET /work?spin_us=100000 HTTP/1.1\r\nHost: t\r\n\r\nGET /seq/2 HTTP/1.1\r\nHost: t\r\n\r\n\
GET /work?spin_us=30000 HTTP/1.1\r\nHost: t\r\n\r\nGET /seq/4 HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let mut r = BufReader::new(c);
    let got: Vec<String> = (0..4)
        .map(|_| read_response(&mut r, false).unwrap().text())
        .collect();
    assert_eq!(got, ["worked\n", "/seq/2", "worked\n", "/seq/4"]);
}

/// Each bad input: the status it earns. Every one must also close the connection (the
/// hardening suite runs them over plain TCP, the TLS suite through a TLS terminator).
pub const BAD_INPUTS: &[(&str, &[u8], u16)] = &[
    ("missing Host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("repeated Host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (
        "CL with TE",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "repeated CL",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    (
        "differing CL",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    ),
    ("CL with sign", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nabcde", 400),
    ("CL not digits", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n", 400),
    (
        "CL overflow",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 184467440737095516160\r\n\r\n",
        400,
    ),
    (
        "bad chunk size",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
        400,
    ),
    (
        "chunk size overflow",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
        400,
    ),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n  folded\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost: t\r\nX-A : 1\r\n\r\n", 400),
    ("NUL in field", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n", 400),
    ("bare CR in field", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n", 400),
    ("control byte in field", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x07b\r\n\r\n", 400),
    ("two spaces in request line", b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("no version", b"GET /\r\nHost: t\r\n\r\n", 400),
    ("garbage request line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    (
        "gzip transfer coding",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
    ),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: t\r\n\r\n", 505),
    ("HTTP/3.0", b"GET / HTTP/3.0\r\nHost: t\r\n\r\n", 505),
    ("HTTP/0.9", b"GET / HTTP/0.9\r\nHost: t\r\n\r\n", 505),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    (
        "empty TE item",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "empty TE items around",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: ,,chunked,,\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("space in Host", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("slash in Host", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    ("comma in Host", b"GET / HTTP/1.1\r\nHost: a,b\r\n\r\n", 400),
    (
        "bare LF in trailer",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\n\r\n",
        400,
    ),
];
