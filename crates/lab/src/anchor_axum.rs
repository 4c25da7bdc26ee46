//! The axum targets: one axum 0.8 app, as its users write it — `GET /` answers
//! `Hello, World!\n`, `GET /work?spin_us=N` burns N µs of CPU (the mixed scenario's slow
//! requests) — served two ways: by `axum::serve` on a tokio multi-thread runtime (`backlog
//! anchor-axum`, the way an axum service runs today) and by backlog in any shape (`backlog
//! serve --app axum`, the same `Router` handed to `serve_service`). The difference between
//! the two is the connection handling alone. Built only with the `axum` feature.

use axum::extract::Query;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Deserialize)]
struct Work {
    spin_us: u64,
}

/// The longest spin honoured.
const MAX_SPIN: Duration = Duration::from_secs(10);

async fn work(Query(w): Query<Work>) -> String {
    let spin = Duration::from_micros(w.spin_us).min(MAX_SPIN);
    let start = Instant::now();
    let mut x: u64 = 0;
    while start.elapsed() < spin {
        for _ in 0..64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    format!("spun {} us\n", spin.as_micros())
}

/// The app both targets serve.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { "Hello, World!\n" }))
        .route("/work", get(work))
}

/// `axum::serve` on `addr` (port 0 picks one) with a runtime of `threads` worker threads,
/// until killed. Prints `axum serving addr=…` on stderr once the listener is bound.
/// `nodelay`: set TCP_NODELAY on each connection, as axum 0.8 documents it
/// (`ListenerExt::tap_io`); `axum::serve` leaves it off, and then a pipelined round's
/// answers, one write each, wait on Nagle's algorithm.
pub fn run(addr: SocketAddr, threads: usize, backlog: i32, nodelay: bool) -> anyhow::Result<()> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    let listener: std::net::TcpListener = socket.into();
    let bound = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("axum")
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        eprintln!("axum serving addr={bound}");
        if nodelay {
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, router()).await?;
        } else {
            axum::serve(listener, router()).await?;
        }
        Ok(())
    })
}
