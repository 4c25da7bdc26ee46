//! The plaintext path allocates nothing per request once warm.
//!
//! dhat's allocator, in testing mode, sees every allocation in this test binary (one test, so no
//! other test runs beside it); the client below allocates nothing in its loop, so what the
//! counter shows during the measured requests is the server's.

use backlog_server::{Model, Request, Response, Router, Server};
use std::io::{Read, Write};
use std::net::TcpStream;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn allocations() -> u64 {
    dhat::HeapStats::get().total_blocks
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

/// Send one request and read exactly one response of `len` bytes, without allocating.
fn one(s: &mut TcpStream, buf: &mut [u8], len: usize) {
    s.write_all(REQUEST).unwrap();
    s.read_exact(&mut buf[..len]).unwrap();
}

#[test]
fn keep_alive_plaintext_allocates_nothing_per_request() {
    let _profiler = dhat::Profiler::builder().testing().build();
    for model in [
        Model::Single,
        Model::Dispatch,
        Model::Shared,
        Model::Reuseport,
    ] {
        let app = Router::new().get("/", |_req: Request| Response::text(200, "Hello, World!\n"));
        let server = Server::builder()
            .io(backlog_server::Io::from_env())
            .listen("127.0.0.1:0".parse().unwrap())
            .model(model)
            .threads(2)
            .bind(app)
            .unwrap();
        let mut s = TcpStream::connect(server.local_addr()).unwrap();
        s.set_nodelay(true).unwrap();
        // Learn the response length (constant: the Date field has a fixed width).
        s.write_all(REQUEST).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.ends_with("Hello, World!\n"), "{text}");
        for _ in 0..2000 {
            one(&mut s, &mut buf, n);
        }
        let before = allocations();
        const N: u64 = 5000;
        for _ in 0..N {
            one(&mut s, &mut buf, n);
        }
        let allocs = allocations() - before;
        // A few are allowed: the Date text is re-formatted once a second.
        assert!(
            allocs < 20,
            "{}: {allocs} allocations for {N} requests",
            model.name()
        );
        drop(s);
        server.stop();
    }
}
