//! The Rust anchor: a hyper 1.x server as its users write it — a tokio current-thread
//! runtime per thread, each with its own SO_REUSEPORT listener — answering
//! `Hello, World!\n` to everything, or HttpArena's endpoints as its users would write them
//! (a match on the path, the body collected for a POST). Built only with the `hyper` feature (it pulls in tokio
//! and hyper); the lab starts it as `backlog anchor-hyper` beside nginx and Node. With a
//! certificate it serves TLS as hyper's users do, through tokio-rustls (rustls with the
//! same *ring* provider as backlog, ALPN http/1.1, session tickets on), the handshake on
//! the task that then serves the connection.

use crate::engine::{body_int, query_sum, Endpoints};
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

fn text(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

/// HttpArena's `/baseline11` (GET, POST), `/pipeline`, 404.
async fn arena(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    use http_body_util::BodyExt;
    if req.uri().path() == "/pipeline" {
        return Ok(text(200, "ok".into()));
    }
    if req.uri().path() != "/baseline11" {
        return Ok(text(404, "not found".into()));
    }
    let Some(mut sum) = query_sum(req.uri().query().unwrap_or("")) else {
        return Ok(text(400, "bad request".into()));
    };
    if req.method() == hyper::Method::POST {
        let Ok(body) = req.into_body().collect().await else {
            return Ok(text(400, "bad request".into()));
        };
        match body_int(&body.to_bytes()) {
            Some(n) => sum = sum.wrapping_add(n),
            None => return Ok(text(400, "bad request".into())),
        }
    }
    Ok(text(200, sum.to_string()))
}

async fn serve_io<I>(io: I, endpoints: Endpoints)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.pipeline_flush(true);
    let io = TokioIo::new(io);
    let _ = match endpoints {
        Endpoints::Demo => http.serve_connection(io, service_fn(hello)).await,
        Endpoints::Arena => http.serve_connection(io, service_fn(arena)).await,
    };
}

async fn serve(
    listener: std::net::TcpListener,
    endpoints: Endpoints,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    loop {
        let (stream, _) = listener.accept().await?;
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve_io(stream, endpoints).await;
                    }
                }
                None => serve_io(stream, endpoints).await,
            }
        });
    }
}

/// A TLS acceptor for `files`, configured as a hyper user would: rustls's defaults, ALPN
/// http/1.1, tickets on.
fn acceptor(files: &crate::tls::CertFiles) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(&files.cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&files.key)?;
    #[allow(deprecated)] // ring: the provider backlog's server uses
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg)))
}

/// Serve on `addr` (port 0 picks one) with `threads` runtimes until killed. Prints
/// `hyper serving addr=…` on stderr once every listener is bound.
pub fn run(
    addr: SocketAddr,
    threads: usize,
    backlog: i32,
    endpoints: Endpoints,
    tls: Option<&crate::tls::CertFiles>,
) -> anyhow::Result<()> {
    let tls = tls.map(acceptor).transpose()?;
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
                .spawn({
                    let tls = tls.clone();
                    move || -> anyhow::Result<()> {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_io()
                            .build()?
                            .block_on(serve(l, endpoints, tls))
                    }
                })
        })
        .collect::<Result<_, _>>()?;
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("a hyper thread panicked"))??;
    }
    Ok(())
}
