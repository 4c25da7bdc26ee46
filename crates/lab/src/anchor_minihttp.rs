//! A peer from the field: may-minihttp (stackful coroutines on `may`, the engine behind
//! several of the fastest Rust entries in public benchmarks) serving HttpArena's endpoints.
//! It reads a body by its Content-Length only: a chunked request is beyond it, so the lab
//! runs it where the load has none (`/pipeline`). Built only with the `minihttp` feature;
//! the lab starts it as `backlog anchor-minihttp`.

use crate::engine::{body_int, query_sum};
use may_minihttp::{HttpServer, HttpService, Request, Response};
use std::io::{self, Read};
use std::net::SocketAddr;

#[derive(Clone)]
struct Arena;

impl HttpService for Arena {
    fn call(&mut self, req: Request, rsp: &mut Response) -> io::Result<()> {
        rsp.header("Content-Type: text/plain");
        let target = req.path().to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        match path {
            "/pipeline" => rsp.body("ok"),
            "/baseline11" => {
                let post = req.method() == "POST";
                let mut total = query_sum(query);
                if post {
                    let mut body = Vec::new();
                    req.body().read_to_end(&mut body)?;
                    total = total.zip(body_int(&body)).map(|(a, b)| a.wrapping_add(b));
                }
                match total {
                    Some(n) => rsp.body_vec(n.to_string().into_bytes()),
                    None => {
                        rsp.status_code(400, "Bad Request");
                    }
                }
            }
            _ => {
                rsp.status_code(404, "Not Found");
            }
        }
        Ok(())
    }
}

/// Serve on `addr` with `threads` worker threads until killed. may-minihttp binds the
/// socket itself, so port 0 is resolved to a free port first. Prints
/// `minihttp serving addr=…` on stderr once bound.
pub fn run(addr: SocketAddr, threads: usize) -> anyhow::Result<()> {
    let addr = if addr.port() == 0 {
        std::net::TcpListener::bind(addr)?.local_addr()?
    } else {
        addr
    };
    may::config().set_workers(threads.max(1));
    let server = HttpServer(Arena).start(addr)?;
    eprintln!("minihttp serving addr={addr}");
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the may-minihttp server panicked"))?;
    Ok(())
}
