//! The Rust anchor: a hyper 1.x server as its users write it — a tokio current-thread
//! runtime per thread, each with its own SO_REUSEPORT listener — answering
//! `Hello, World!\n` to everything. Built only with the `hyper` feature (it pulls in tokio
//! and hyper); the lab starts it as `backlog anchor-hyper` beside nginx and Node.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;

async fn hello(_: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::builder()
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(b"Hello, World!\n")))
        .unwrap_or_default())
}

async fn serve(listener: std::net::TcpListener) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .pipeline_flush(true)
                .serve_connection(TokioIo::new(stream), service_fn(hello))
                .await;
        });
    }
}

/// Serve on `addr` (port 0 picks one) with `threads` runtimes until killed. Prints
/// `hyper serving addr=…` on stderr once every listener is bound.
pub fn run(addr: SocketAddr, threads: usize, backlog: i32) -> anyhow::Result<()> {
    let first = crate::floor::reuseport_listener(addr, backlog)?;
    let bound = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..threads.max(1) {
        listeners.push(crate::floor::reuseport_listener(bound, backlog)?);
    }
    eprintln!("hyper serving addr={bound}");
    let handles: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            std::thread::Builder::new()
                .name(format!("hyper-{i}"))
                .spawn(move || -> anyhow::Result<()> {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_io()
                        .build()?
                        .block_on(serve(l))
                })
        })
        .collect::<Result<_, _>>()?;
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("a hyper thread panicked"))??;
    }
    Ok(())
}
