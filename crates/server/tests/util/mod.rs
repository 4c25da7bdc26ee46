//! Helpers for integration tests: real servers on ephemeral loopback ports, raw TCP clients.

#![allow(dead_code)]

use server::{AcceptStrategy, Balance, Model, Request, Response, Router, Server, ServerBuilder};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every model and every accept / balance variant, two threads each.
pub fn all_configs() -> Vec<(String, ServerBuilder)> {
    let base = || {
        Server::builder()
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

/// The test application: `/` hello, `/echo` echoes the body, `/seq/...` answers with its own
/// target (so order can be checked), `/work?spin_us=N` burns CPU, `/panic` panics, `/big`
/// answers 64 KiB.
pub fn app() -> Router {
    let echo = |req: Request| Response::text(200, req.body().clone());
    let seq = |req: Request| Response::text(200, req.target().to_string());
    Router::new()
        .get("/", |_req: Request| Response::text(200, "Hello, World!\n"))
        .post("/echo", echo)
        .prefix(server::Method::Get, "/seq/", seq)
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
            server::Blocking(|req: Request| {
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

    pub fn stats(&self) -> Vec<server::ThreadSnapshot> {
        self.server().stats().snapshot()
    }

    pub fn stop(mut self) -> Arc<server::StatsRegistry> {
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

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A fresh connection as a writer and a buffered reader over the same socket.
pub fn open(addr: SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let s = connect(addr);
    let w = s.try_clone().unwrap();
    (w, BufReader::new(s))
}

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Read one response. `head`: the request was HEAD (no body follows).
pub fn read_response<R: BufRead>(r: &mut R, head: bool) -> io::Result<HttpResponse> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    assert_eq!(version, "HTTP/1.1", "status line {line:?}");
    let status: u16 = parts.next().unwrap_or("0").parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').expect("header line");
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let mut resp = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if !head && status >= 200 && status != 204 && status != 304 {
        let len: usize = resp
            .header("content-length")
            .expect("content-length")
            .parse()
            .unwrap();
        resp.body.resize(len, 0);
        r.read_exact(&mut resp.body)?;
    }
    Ok(resp)
}

/// Send `raw` on a fresh connection and read one response.
pub fn roundtrip(addr: SocketAddr, raw: &[u8]) -> HttpResponse {
    let mut s = connect(addr);
    s.write_all(raw).unwrap();
    let mut r = BufReader::new(s);
    read_response(&mut r, false).expect("response")
}

/// After a response that closes, the server must close: the next read sees EOF.
pub fn assert_closed<R: Read>(r: &mut R) {
    let mut buf = [0u8; 64];
    match r.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected close, got {n} more bytes: {:?}", &buf[..n]),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected close, got {e}"),
    }
}
