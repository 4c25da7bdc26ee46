//! A tower service — an unmodified axum `Router` — served on every preset, spoken to over
//! raw TCP: extractors, async handlers on tokio's timers, answers in order, panics, streamed
//! bodies, cancellation on reset, backpressure and the drain.

mod util;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::*;

#[derive(Default)]
struct AppState {
    hits: AtomicUsize,
    started: AtomicUsize,
}

#[derive(Deserialize)]
struct Sleep {
    ms: u64,
}

/// A stream of `n` pieces of 64 KiB, produced one at a time.
fn pieces(n: usize) -> axum::body::Body {
    let piece = Bytes::from(vec![b's'; 64 * 1024]);
    let stream = futures_stream(n, piece);
    axum::body::Body::from_stream(stream)
}

/// `n` copies of `piece`, each after a yield to the runtime (a producer that is not ready
/// at once).
fn futures_stream(
    n: usize,
    piece: Bytes,
) -> impl futures_core::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    struct Pieces {
        left: usize,
        piece: Bytes,
        ready: bool,
    }
    impl futures_core::Stream for Pieces {
        type Item = Result<Bytes, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            if self.left == 0 {
                return std::task::Poll::Ready(None);
            }
            if !self.ready {
                self.ready = true;
                cx.waker().wake_by_ref();
                return std::task::Poll::Pending;
            }
            self.ready = false;
            self.left -= 1;
            std::task::Poll::Ready(Some(Ok(self.piece.clone())))
        }
    }
    Pieces {
        left: n,
        piece,
        ready: false,
    }
}

/// A body of one piece of data, then trailers, then its end.
struct WithTrailers(u8);

impl http_body::Body for WithTrailers {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0 += 1;
        std::task::Poll::Ready(match self.0 {
            1 => Some(Ok(http_body::Frame::data(Bytes::from_static(
                b"before trailers\n",
            )))),
            2 => {
                let mut trailers = axum::http::HeaderMap::new();
                trailers.insert("x-checksum", "1".parse().unwrap());
                Some(Ok(http_body::Frame::trailers(trailers)))
            }
            _ => None,
        })
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(|| async { "Hello, World!\n" }))
        .route(
            "/items/{id}",
            get(
                |Path(id): Path<u32>, State(s): State<Arc<AppState>>| async move {
                    s.hits.fetch_add(1, Ordering::Relaxed);
                    Json(serde_json::json!({ "id": id }))
                },
            ),
        )
        .route(
            "/sleep",
            get(|Query(q): Query<Sleep>| async move {
                tokio::time::sleep(Duration::from_millis(q.ms)).await;
                format!("slept {}\n", q.ms)
            }),
        )
        .route(
            "/echo",
            post(|Json(v): Json<serde_json::Value>| async move { (StatusCode::CREATED, Json(v)) }),
        )
        .route(
            "/panic",
            get(|| async {
                tokio::task::yield_now().await;
                panic!("async handler panic");
                #[allow(unreachable_code)]
                ""
            }),
        )
        .route(
            "/never",
            get(|State(s): State<Arc<AppState>>| async move {
                s.started.fetch_add(1, Ordering::Relaxed);
                std::future::pending::<()>().await;
                ""
            }),
        )
        .route(
            "/stream",
            get(|Query(q): Query<Sleep>| async move { pieces(q.ms as usize) }),
        )
        .route(
            "/count",
            post(
                |Query(q): Query<Sleep>, body: axum::body::Body| async move {
                    // Reads as it comes, `ms` per piece: a slow reader.
                    let mut body = body;
                    let mut n = 0usize;
                    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
                        let Ok(data) = frame.map_err(|e| e.to_string())?.into_data() else {
                            continue;
                        };
                        n += data.len();
                        if q.ms > 0 {
                            tokio::time::sleep(Duration::from_millis(q.ms)).await;
                        }
                    }
                    Ok::<_, String>(format!("{n}\n"))
                },
            ),
        )
        .route(
            "/mirror",
            post(|body: axum::body::Body| async move { body }),
        )
        .route(
            "/trailers",
            get(|| async { axum::body::Body::new(WithTrailers(0)) }),
        )
        .route(
            "/peer",
            get(|req: axum::extract::Request| async move {
                match req.extensions().get::<backlog_server::PeerAddr>() {
                    Some(peer) => peer.0.to_string(),
                    None => "none".to_string(),
                }
            }),
        )
        .route(
            "/gib",
            get(|| async {
                let piece = Bytes::from(vec![b'g'; 64 * 1024]);
                let n = (1usize << 30) / piece.len();
                axum::body::Body::from_stream(futures_stream(n, piece))
            }),
        )
        .with_state(state)
}

fn start(builder: backlog_server::ServerBuilder) -> (backlog_server::Server, Arc<AppState>) {
    let state = Arc::new(AppState::default());
    let server = builder.bind_service(router(state.clone())).unwrap();
    (server, state)
}

fn check_routes(addr: SocketAddr, name: &str) {
    let hello = request(addr, "GET", "/", &[], b"");
    assert_eq!(
        (hello.status, hello.text()),
        (200, "Hello, World!\n".into()),
        "{name}"
    );
    let item = request(addr, "GET", "/items/7", &[], b"");
    assert_eq!(item.status, 200, "{name}");
    assert_eq!(item.header("content-type"), Some("application/json"));
    assert_eq!(item.text(), r#"{"id":7}"#);
    assert_eq!(
        request(addr, "GET", "/items/x", &[], b"").status,
        400,
        "{name}"
    );
    let slept = request(addr, "GET", "/sleep?ms=20", &[], b"");
    assert_eq!(
        (slept.status, slept.text()),
        (200, "slept 20\n".into()),
        "{name}"
    );
    let echo = request(
        addr,
        "POST",
        "/echo",
        &[("Content-Type", "application/json")],
        br#"{"a":[1,2]}"#,
    );
    assert_eq!(
        (echo.status, echo.text()),
        (201, r#"{"a":[1,2]}"#.into()),
        "{name}"
    );
    assert_eq!(
        request(addr, "GET", "/nope", &[], b"").status,
        404,
        "{name}"
    );
    assert_eq!(request(addr, "POST", "/", &[], b"").status, 405, "{name}");
    let head = request(addr, "HEAD", "/", &[], b"");
    assert_eq!(head.status, 200, "{name}");
    // The server's own refusals are unchanged.
    let refused = roundtrip(addr, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(refused.status, 400, "{name}: no Host");
    // A target the http crate cannot hold is refused, not served as another route.
    let refused = roundtrip(addr, b"GET /items/7?q=\"x\" HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(refused.status, 400, "{name}: {}", refused.text());
    assert_eq!(refused.header("connection"), Some("close"), "{name}");

    // Pipelined: a slow answer first, fast ones after, all in order on one connection.
    let (mut s, mut r) = open(addr);
    s.write_all(
        b"GET /sleep?ms=50 HTTP/1.1\r\nHost: t\r\n\r\nGET /items/1 HTTP/1.1\r\nHost: t\r\n\r\n\
GET /sleep?ms=1 HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let bodies: Vec<String> = (0..4)
        .map(|_| next_response(&mut r).expect("an answer").text())
        .collect();
    assert_eq!(
        bodies,
        ["slept 50\n", r#"{"id":1}"#, "slept 1\n", "Hello, World!\n"],
        "{name}"
    );
    assert_closed(&mut r);
}

#[test]
fn an_axum_router_runs_on_every_preset_and_a_hybrid_topology() {
    let mut shapes = models();
    shapes.push((
        "hybrid",
        backlog_server::Server::builder()
            .io(backlog_server::Io::from_env())
            .listen("127.0.0.1:0".parse().unwrap())
            .topology(
                "listeners=1 acceptors=1 readers=2 workers=2"
                    .parse()
                    .unwrap(),
            ),
    ));
    for (name, builder) in shapes {
        let (server, state) = start(builder);
        check_routes(server.local_addr(), name);
        assert!(
            state.hits.load(Ordering::Relaxed) >= 2,
            "{name}: the state is shared"
        );
        let stats = server.stop();
        let requests: u64 = stats.snapshot().iter().map(|t| t.requests).sum();
        assert!(requests >= 12, "{name}: {requests} requests counted");
    }
}

#[test]
fn a_panic_in_an_async_handler_is_a_500_that_closes_and_is_counted() {
    let _turn = memory_turn();
    for (name, builder) in models() {
        let (server, _) = start(builder);
        let addr = server.local_addr();
        let (mut s, mut r) = open(addr);
        s.write_all(b"GET /panic HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let resp = next_response(&mut r).expect("the 500");
        assert_eq!(resp.status, 500, "{name}");
        assert_eq!(resp.header("connection"), Some("close"), "{name}");
        assert_closed(&mut r);
        assert_eq!(
            request(addr, "GET", "/", &[], b"").status,
            200,
            "{name}: still serving"
        );
        let stats = server.stop();
        let panics: u64 = stats.snapshot().iter().map(|t| t.panics).sum();
        assert_eq!(panics, 1, "{name}");
    }
}

#[test]
fn a_streamed_body_arrives_whole_in_chunks() {
    for (name, builder) in models() {
        let (server, _) = start(builder);
        let addr = server.local_addr();
        let resp = request(addr, "GET", "/stream?ms=40", &[], b"");
        assert_eq!(resp.status, 200, "{name}");
        assert_eq!(resp.header("transfer-encoding"), Some("chunked"), "{name}");
        assert_eq!(resp.body.len(), 40 * 64 * 1024, "{name}");
        assert!(resp.body.iter().all(|&b| b == b's'));
        // HTTP/1.0 has no chunks: the body ends with the connection.
        let (mut s, mut r) = open(addr);
        s.write_all(b"GET /stream?ms=3 HTTP/1.0\r\n\r\n").unwrap();
        let mut all = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut all).unwrap();
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.starts_with("HTTP/1.1 200") && !text.contains("chunked"),
            "{name}"
        );
        assert!(all.ends_with(&[b's'; 3 * 64 * 1024][..]), "{name}");
        server.stop();
    }
}

/// POST `target` with `head`'s fields, then after a pause `body` and a GET after it: the
/// request is handed over at its head, before its body comes. The answer, and the reader
/// (to see what follows it).
fn head_then_body(
    addr: SocketAddr,
    target: &str,
    head: &str,
    body: &str,
) -> (HttpResponse, BufReader<std::net::TcpStream>) {
    let (mut s, mut r) = open(addr);
    s.write_all(format!("POST {target} HTTP/1.1\r\n{head}").as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    s.write_all(format!("{body}GET / HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    (next_response(&mut r).expect("an answer"), r)
}

#[test]
fn a_streamed_body_that_breaks_its_framing_is_answered_and_the_connection_closes() {
    // The request is handed over at its head and its body streams; then the framing
    // breaks. The service must learn why its body ended (not wait for the body timeout),
    // and nothing may be read after broken framing.
    let head = "Host: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    let broken: [(&str, &str, bool); 3] = [
        (
            "data past its size",
            "3\r\nabc\r\n3\r\nabcd\r\n0\r\n\r\n",
            false,
        ),
        ("bare LF", "3\nabc\n0\n\n", true),
        ("size not hex", "zz\r\nabc\r\n0\r\n\r\n", true),
    ];
    for (name, builder) in models() {
        let (server, _) = start(builder);
        let addr = server.local_addr();
        for (what, tail, first) in broken {
            // A handler that reads the body itself is told why it ended.
            let (resp, mut r) = head_then_body(addr, "/count?ms=0", head, tail);
            assert!(
                resp.text().contains("request body was refused"),
                "{name}, {what}: {}",
                resp.text()
            );
            assert_closed(&mut r);
            if !first {
                continue;
            }
            // A response whose body is the request's, failing before any of it came: the
            // server answers with the refusal the body earned.
            let (resp, mut r) = head_then_body(addr, "/mirror", head, tail);
            assert_eq!(resp.status, 400, "{name}, {what}: {}", resp.text());
            assert!(
                resp.text().contains("chunk"),
                "{name}, {what}: {}",
                resp.text()
            );
            assert_eq!(resp.header("connection"), Some("close"), "{name}, {what}");
            assert_closed(&mut r);
        }
        assert_eq!(
            request(addr, "GET", "/", &[], b"").status,
            200,
            "{name}: still serving"
        );
        server.stop();
    }
}

#[test]
fn a_streamed_body_that_stops_arriving_is_answered_408_once() {
    for (name, builder) in models() {
        let timeouts = backlog_server::Timeouts {
            body: Duration::from_millis(300),
            ..Default::default()
        };
        let (server, _) = start(builder.timeouts(timeouts));
        let addr = server.local_addr();
        let head = "Host: t\r\nTransfer-Encoding: chunked\r\n\r\n";
        // The body's answer is the service's, failing for want of it: one 408, then close.
        let (mut s, mut r) = open(addr);
        s.write_all(format!("POST /mirror HTTP/1.1\r\n{head}").as_bytes())
            .unwrap();
        let t0 = Instant::now();
        let resp = next_response(&mut r).expect("an answer");
        assert_eq!(resp.status, 408, "{name}: {}", resp.text());
        assert_eq!(resp.header("connection"), Some("close"), "{name}");
        assert_closed(&mut r);
        assert!(t0.elapsed() >= Duration::from_millis(300), "{name}");
        // A handler reading the body itself learns why it ended.
        let (mut s, mut r) = open(addr);
        s.write_all(format!("POST /count?ms=0 HTTP/1.1\r\n{head}3\r\nabc\r\n").as_bytes())
            .unwrap();
        let resp = next_response(&mut r).expect("an answer");
        assert!(
            resp.text().contains("stopped arriving"),
            "{name}: {}",
            resp.text()
        );
        assert_closed(&mut r);
        server.stop();
    }
}

#[test]
fn a_body_refused_for_a_service_is_rendered_as_the_application_renders_refusals() {
    for (name, builder) in models() {
        let builder = builder.on_refusal(|r: &backlog_server::Refusal| {
            backlog_server::Response::json_bytes(200, format!(r#"{{"error":"{}"}}"#, r.reason()))
        });
        let (server, _) = start(builder);
        let (mut s, mut r) = open(server.local_addr());
        s.write_all(
            b"POST /mirror HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        )
        .unwrap();
        let resp = next_response(&mut r).expect("an answer");
        assert_eq!(resp.status, 400, "{name}: {}", resp.text());
        assert!(
            resp.text()
                .starts_with(r#"{"error":"invalid chunked body: "#),
            "{name}: {}",
            resp.text()
        );
        assert_closed(&mut r);
        server.stop();
    }
}

#[test]
fn a_client_that_resets_mid_request_has_its_future_dropped_and_counted() {
    for (name, builder) in models() {
        let (server, state) = start(builder);
        let addr = server.local_addr();
        let (mut s, r) = open(addr);
        // The reader holds a second descriptor of the socket: only the last close resets.
        drop(r);
        s.write_all(b"GET /never HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        wait_until(
            &format!("{name}: the handler started"),
            Duration::from_secs(5),
            || state.started.load(Ordering::Relaxed) == 1,
        );
        reset(s);
        let cancelled = || -> u64 { server.stats().snapshot().iter().map(|t| t.cancelled).sum() };
        wait_until(
            &format!("{name}: the future is dropped"),
            Duration::from_secs(5),
            || cancelled() == 1,
        );
        server.stop();
    }
}

#[test]
fn a_service_that_never_answers_does_not_let_pipelined_requests_pile_up() {
    for (name, builder) in models() {
        let (server, state) = start(builder.drain_timeout(Duration::from_millis(200)));
        let addr = server.local_addr();
        let (mut s, _r) = open(addr);
        let many = b"GET /never HTTP/1.1\r\nHost: t\r\n\r\n".repeat(2000);
        s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        // The server stops reading: the write may not finish, which is the point.
        let _ = s.write_all(&many);
        std::thread::sleep(Duration::from_millis(100));
        let started = state.started.load(Ordering::Relaxed);
        assert!(
            (1..=64).contains(&started),
            "{name}: {started} futures started for one connection"
        );
        let stats = server.stop();
        let cancelled: u64 = stats.snapshot().iter().map(|t| t.cancelled).sum();
        assert_eq!(cancelled as usize, started, "{name}: cut by the drain");
    }
}

#[test]
fn a_drain_waits_for_futures_in_flight_then_cancels_what_outlives_it() {
    for (name, builder) in models() {
        let (server, state) = start(builder.drain_timeout(Duration::from_millis(1500)));
        let addr = server.local_addr();
        let (mut slow, slow_r) = open(addr);
        slow.write_all(b"GET /sleep?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let (mut never, _never_r) = open(addr);
        never
            .write_all(b"GET /never HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        wait_until(
            &format!("{name}: /never started"),
            Duration::from_secs(5),
            || state.started.load(Ordering::Relaxed) == 1,
        );
        let reader = std::thread::spawn(move || {
            let mut r = slow_r;
            next_response(&mut r).map(|resp| (resp.status, resp.text()))
        });
        let t0 = Instant::now();
        let stats = server.stop();
        let took = t0.elapsed();
        assert_eq!(
            reader.join().unwrap(),
            Some((200, "slept 300\n".into())),
            "{name}: the answer in flight is finished"
        );
        assert!(
            took >= Duration::from_millis(1000),
            "{name}: stopped after {took:?}"
        );
        let cancelled: u64 = stats.snapshot().iter().map(|t| t.cancelled).sum();
        assert_eq!(cancelled, 1, "{name}: the future that outlived the drain");
        drop(BufReader::new(never));
    }
}

/// Upload `len` bytes to `/count?ms=..` from a shared buffer, in pieces; the count it
/// answers.
fn upload(addr: SocketAddr, len: usize, ms: u64, chunked: bool) -> String {
    static PIECE: [u8; 64 * 1024] = [b'u'; 64 * 1024];
    let (mut w, mut r) = open(addr);
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {len}")
    };
    let head = format!("POST /count?ms={ms} HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n");
    w.write_all(head.as_bytes()).unwrap();
    let mut left = len;
    while left > 0 {
        let n = left.min(PIECE.len());
        if chunked {
            write!(w, "{n:x}\r\n").unwrap();
        }
        w.write_all(&PIECE[..n]).unwrap();
        if chunked {
            w.write_all(b"\r\n").unwrap();
        }
        left -= n;
    }
    if chunked {
        w.write_all(b"0\r\n\r\n").unwrap();
    }
    let resp = next_response(&mut r).expect("an answer");
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.text()
}

/// Tests that measure this process's RSS and tests whose handlers panic on purpose take
/// turns: with RUST_BACKTRACE set, a panic's backtrace loads the test binary's debug
/// information, ~100 MiB of RSS that a measurement running beside it counted as the
/// server's (seen as "RSS grew 108104 KiB" for the 1 GiB stream).
static PROCESS_MEMORY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn memory_turn() -> std::sync::MutexGuard<'static, ()> {
    PROCESS_MEMORY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sample this process's RSS while `work` runs; the peak growth, in KiB.
fn peak_growth(work: impl FnOnce() + Send) -> u64 {
    let before = rss_kib();
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut peak = before;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            work();
            done.store(true, Ordering::Relaxed);
        });
        while !done.load(Ordering::Relaxed) {
            peak = peak.max(rss_kib());
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    peak.saturating_sub(before)
}

/// 32 clients upload 20 MiB each at once to a handler that reads its body as a stream: the
/// body reaches it as it arrives, the whole of it, and the server holds a bounded window
/// per connection (the rest waits in the kernel's queues), so memory stays far below the
/// 640 MiB sent.
#[test]
fn uploads_stream_to_the_handler_with_memory_bounded() {
    let _turn = memory_turn();
    const CLIENTS: usize = 32;
    const SIZE: usize = 20 << 20;
    for (name, builder) in [
        ("single", builder(backlog_server::Model::Single)),
        ("pool", builder(backlog_server::Model::Pool)),
    ] {
        let builder = builder.limits(h1::Limits {
            max_body_bytes: 64 << 20,
            ..h1::Limits::default()
        });
        let (server, _) = start(builder);
        let addr = server.local_addr();
        // Warm: threads, buffers and the runtime exist before the baseline.
        assert_eq!(upload(addr, 1 << 20, 0, false), "1048576\n");
        let growth = peak_growth(|| {
            std::thread::scope(|scope| {
                for c in 0..CLIENTS {
                    scope.spawn(move || {
                        let got = upload(addr, SIZE, 0, c % 4 == 0);
                        assert_eq!(got, format!("{SIZE}\n"));
                    });
                }
            });
        });
        eprintln!(
            "{name}: {CLIENTS} uploads of 20 MiB at once, RSS grew {} MiB at the peak",
            growth / 1024
        );
        assert!(growth < 64 * 1024, "{name}: RSS grew {growth} KiB");
        server.stop();
    }
}

/// A handler that reads slowly makes its client wait: the reader stops reading when the
/// body's window is full, and the upload still completes whole.
#[test]
fn a_slow_reading_handler_slows_the_upload_down() {
    for (name, builder) in models() {
        let (server, _) = start(builder.limits(h1::Limits {
            max_body_bytes: 64 << 20,
            ..h1::Limits::default()
        }));
        let addr = server.local_addr();
        let t0 = Instant::now();
        // 4 MiB read at 64 KiB pieces (or smaller), 1 ms each: at least 64 ms.
        assert_eq!(
            upload(addr, 4 << 20, 1, false),
            format!("{}\n", 4 << 20),
            "{name}"
        );
        assert!(t0.elapsed() >= Duration::from_millis(60), "{name}");
        server.stop();
    }
}

/// A 1 GiB streamed answer to a client that reads slowly: the producer is paused while the
/// socket is full, so the server's memory stays flat.
#[test]
fn a_gib_streamed_to_a_slow_reader_keeps_memory_flat() {
    let _turn = memory_turn();
    for (name, builder) in [
        ("single", builder(backlog_server::Model::Single)),
        ("pool", builder(backlog_server::Model::Pool)),
    ] {
        let (server, _) = start(builder);
        let addr = server.local_addr();
        let growth = peak_growth(|| {
            let (mut w, r) = open(addr);
            w.write_all(b"GET /gib HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut r = r.into_inner();
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            let mut since_pause = 0usize;
            loop {
                let n = std::io::Read::read(&mut r, &mut buf).unwrap();
                if n == 0 {
                    break;
                }
                total += n as u64;
                since_pause += n;
                if since_pause >= 4 << 20 {
                    since_pause = 0;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            assert!(total > 1 << 30, "{name}: {total} bytes");
        });
        eprintln!(
            "{name}: 1 GiB to a slow reader, RSS grew {} KiB at the peak",
            growth
        );
        assert!(growth < 16 * 1024, "{name}: RSS grew {growth} KiB");
        server.stop();
    }
}

/// `Connection: close`, HEAD and `Expect: 100-continue` behave for a service as for a
/// native handler: the answer says close and the connection closes; HEAD has the GET's
/// fields and no body; 100 Continue comes before a body the client holds back, small
/// (read whole) or large (streamed to the handler).
#[test]
fn close_head_and_100_continue_behave_as_for_native_handlers() {
    for (name, builder) in models() {
        let (server, _) = start(builder.limits(h1::Limits {
            max_body_bytes: 64 << 20,
            ..h1::Limits::default()
        }));
        let addr = server.local_addr();
        let (mut w, mut r) = open(addr);
        w.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let resp = next_response(&mut r).expect("an answer");
        assert_eq!(resp.header("connection"), Some("close"), "{name}");
        assert_closed(&mut r);

        let (mut w, mut r) = open(addr);
        w.write_all(
            b"HEAD /items/3 HTTP/1.1\r\nHost: t\r\n\r\nGET /items/3 HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
        let head = read_response(&mut r, true).unwrap();
        let get = read_response(&mut r, false).unwrap();
        assert_eq!(head.status, 200, "{name}");
        assert_eq!(
            head.header("content-length"),
            get.header("content-length"),
            "{name}: HEAD has the GET's length"
        );
        assert_eq!(get.text(), r#"{"id":3}"#);

        for size in [100usize, 1 << 20] {
            let (mut w, mut r) = open(addr);
            let head = format!(
                "POST /count?ms=0 HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: {size}\r\n\r\n"
            );
            w.write_all(head.as_bytes()).unwrap();
            let mut line = String::new();
            std::io::BufRead::read_line(&mut r, &mut line).unwrap();
            assert_eq!(line, "HTTP/1.1 100 Continue\r\n", "{name}: {size}");
            std::io::BufRead::read_line(&mut r, &mut line).unwrap();
            w.write_all(&vec![b'c'; size]).unwrap();
            let resp = next_response(&mut r).expect("the answer");
            assert_eq!(resp.text(), format!("{size}\n"), "{name}: {size}");
        }
        server.stop();
    }
}

/// A request that closes the connection (`Connection: close`, HTTP/1.0, or one read while
/// draining) still has its streamed body read to the end: the connection stops reading at
/// the end of its body, not at its head.
#[test]
fn a_closing_request_still_streams_its_whole_body() {
    for (name, builder) in models() {
        let (server, _) = start(builder.limits(h1::Limits {
            max_body_bytes: 64 << 20,
            ..h1::Limits::default()
        }));
        let addr = server.local_addr();
        for (version, close) in [("1.1", "Connection: close\r\n"), ("1.0", "")] {
            let (mut w, mut r) = open(addr);
            let size = 3 << 20;
            let head = format!(
                "POST /count?ms=0 HTTP/{version}\r\nHost: t\r\n{close}Content-Length: {size}\r\n\r\n"
            );
            w.write_all(head.as_bytes()).unwrap();
            w.write_all(&vec![b'z'; size]).unwrap();
            let resp = next_response(&mut r).expect("the answer");
            assert_eq!(resp.text(), format!("{size}\n"), "{name} HTTP/{version}");
            assert_closed(&mut r);
        }
        server.stop();
    }
}

/// HEAD on a route whose body streams: the head alone, at once — the body (a GiB here) is
/// dropped unread, not produced for nothing — and the connection goes on.
#[test]
fn head_on_a_streamed_route_answers_without_producing_the_body() {
    for (name, builder) in models() {
        let (server, _) = start(builder);
        let (mut w, mut r) = open(server.local_addr());
        let t0 = Instant::now();
        w.write_all(b"HEAD /gib HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let head = read_response(&mut r, true).unwrap();
        assert_eq!(head.status, 200, "{name}");
        assert!(head.body.is_empty());
        let next = read_response(&mut r, false).unwrap();
        assert_eq!(next.text(), "Hello, World!\n", "{name}");
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "{name}: {:?}",
            t0.elapsed()
        );
        server.stop();
    }
}

#[test]
fn the_peer_address_is_in_the_extensions_only_when_asked_for() {
    for (name, builder) in models() {
        let (server, _) = start(builder.peer_addrs(backlog_server::PeerAddrs::Inserted));
        let (mut s, mut r) = open(server.local_addr());
        let mine = s.local_addr().unwrap();
        s.write_all(b"GET /peer HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let resp = next_response(&mut r).expect("an answer");
        assert_eq!(resp.text(), mine.to_string(), "{name}");
        server.stop();
    }
    for (name, builder) in models() {
        let (server, _) = start(builder);
        let resp = request(server.local_addr(), "GET", "/peer", &[], b"");
        assert_eq!(resp.text(), "none", "{name}: not asked for");
        server.stop();
    }
}

#[test]
fn trailers_are_left_out_and_the_connection_goes_on() {
    for (name, builder) in models() {
        let (server, _) = start(builder);
        let (mut s, mut r) = open(server.local_addr());
        s.write_all(b"GET /trailers HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let first = next_response(&mut r).expect("the answer with trailers");
        assert_eq!(
            (first.status, first.text()),
            (200, "before trailers\n".into()),
            "{name}"
        );
        let second = next_response(&mut r).expect("the next answer");
        assert_eq!(second.text(), "Hello, World!\n", "{name}");
        server.stop();
    }
}

/// A plain tower service (not axum): not ready the first two times each clone is asked
/// (it wakes the task itself), its `call` panicking — before any future exists — for
/// `/panic-in-call`; or, as `Unready::failing`, never ready but failed.
#[derive(Clone)]
struct Unready {
    asked: usize,
    failing: bool,
}

impl tower::Service<axum::http::Request<backlog_server::RequestBody>> for Unready {
    type Response = axum::http::Response<String>;
    type Error = backlog_server::BoxError;
    type Future =
        std::future::Ready<Result<axum::http::Response<String>, backlog_server::BoxError>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        if self.failing {
            return std::task::Poll::Ready(Err("never ready".into()));
        }
        self.asked += 1;
        if self.asked <= 2 {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::http::Request<backlog_server::RequestBody>) -> Self::Future {
        assert!(self.asked > 2, "called before it was ready");
        if req.uri().path() == "/panic-in-call" {
            panic!("a panic in the service's call");
        }
        std::future::ready(Ok(axum::http::Response::new(format!(
            "{}\n",
            req.uri().path()
        ))))
    }
}

#[test]
fn a_service_not_ready_at_once_panicking_in_call_or_failing_is_answered_as_a_handler_is() {
    let _turn = memory_turn();
    for model in MODELS {
        let name = model.name();
        let server = builder(model)
            .bind_service(Unready {
                asked: 0,
                failing: false,
            })
            .unwrap();
        let addr = server.local_addr();
        let resp = request(addr, "GET", "/a", &[], b"");
        assert_eq!((resp.status, resp.text()), (200, "/a\n".into()), "{name}");
        let (mut s, mut r) = open(addr);
        s.write_all(
            b"GET /panic-in-call HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
        let resp = next_response(&mut r).expect("the 500");
        assert_eq!(resp.status, 500, "{name}");
        assert_eq!(resp.header("connection"), Some("close"), "{name}");
        assert_closed(&mut r);
        let resp = request(addr, "GET", "/c", &[], b"");
        assert_eq!((resp.status, resp.text()), (200, "/c\n".into()), "{name}");
        let stats = server.stop();
        let panics: u64 = stats.snapshot().iter().map(|t| t.panics).sum();
        assert_eq!(panics, 1, "{name}");

        let server = builder(model)
            .bind_service(Unready {
                asked: 0,
                failing: true,
            })
            .unwrap();
        let resp = request(server.local_addr(), "GET", "/a", &[], b"");
        assert_eq!(resp.status, 500, "{name}: a failed readiness");
        let stats = server.stop();
        let panics: u64 = stats.snapshot().iter().map(|t| t.panics).sum();
        assert_eq!(panics, 0, "{name}: a failure is not a panic");
    }
}
