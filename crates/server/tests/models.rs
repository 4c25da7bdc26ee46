//! The same HTTP behaviour under every model: load, pipelining, keep-alive, bodies.

mod util;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use util::*;

const CONNS: usize = 200;
const REQUESTS: usize = 50;
const DEPTH: usize = 10;
const CLIENT_THREADS: usize = 20;

/// 200 connections open at once, each sending 50 requests in pipelined batches of 10;
/// every response must be the right one, in order.
fn pipelined_load(name: &str, server: &TestServer) {
    let addr = server.addr;
    let per_thread = CONNS / CLIENT_THREADS;
    let threads: Vec<_> = (0..CLIENT_THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let mut conns: Vec<(TcpStream, BufReader<TcpStream>)> = (0..per_thread)
                    .map(|_| {
                        let s = connect(addr);
                        let r = BufReader::new(s.try_clone().unwrap());
                        (s, r)
                    })
                    .collect();
                for batch in 0..REQUESTS / DEPTH {
                    for (c, (w, _)) in conns.iter_mut().enumerate() {
                        let mut out = Vec::new();
                        for i in 0..DEPTH {
                            let n = batch * DEPTH + i;
                            out.extend_from_slice(
                                format!("GET /seq/{t}/{c}/{n} HTTP/1.1\r\nHost: t\r\n\r\n")
                                    .as_bytes(),
                            );
                        }
                        w.write_all(&out).unwrap();
                    }
                    for (c, (_, r)) in conns.iter_mut().enumerate() {
                        for i in 0..DEPTH {
                            let n = batch * DEPTH + i;
                            let resp = read_response(r, false).expect("response");
                            assert_eq!(resp.status, 200);
                            assert_eq!(resp.text(), format!("/seq/{t}/{c}/{n}"));
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join()
            .unwrap_or_else(|_| panic!("{name}: a client thread failed"));
    }
    let stats = server.stats();
    let total: u64 = stats
        .iter()
        .filter(|s| s.role != backlog_server::stats::Role::Worker)
        .map(|s| s.requests)
        .sum();
    assert!(
        total >= (CONNS * REQUESTS) as u64,
        "{name}: {total} requests counted"
    );
    let accepted: u64 = stats.iter().map(|s| s.accepted).sum();
    assert_eq!(accepted, CONNS as u64, "{name}: one accept per connection");
}

#[test]
fn every_model_serves_pipelined_load_in_order() {
    for (name, builder) in all_configs() {
        let server = TestServer::start(builder);
        pipelined_load(&name, &server);
    }
}

#[test]
fn keep_alive_reuses_one_connection() {
    for (name, builder) in all_configs() {
        let server = TestServer::start(builder);
        let (mut w, mut r) = open(server.addr);
        for _ in 0..5 {
            w.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            let resp = read_response(&mut r, false).unwrap();
            assert_eq!(resp.status, 200, "{name}");
            assert_eq!(resp.text(), "Hello, World!\n");
            assert!(resp.header("date").is_some() && resp.header("server").is_some());
            assert!(
                resp.header("connection").is_none(),
                "{name}: keep-alive is the default"
            );
        }
        let accepted: u64 = server.stats().iter().map(|s| s.accepted).sum();
        assert_eq!(accepted, 1, "{name}");
    }
}

#[test]
fn http_1_0_closes_unless_keep_alive_is_asked() {
    for (name, builder) in all_configs() {
        let server = TestServer::start(builder);
        let (mut w, mut r) = open(server.addr);
        w.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.status, 200, "{name}");
        assert_eq!(resp.header("connection"), Some("close"), "{name}");
        assert_closed(&mut r);

        let (mut w, mut r) = open(server.addr);
        for _ in 0..2 {
            w.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap();
            let resp = read_response(&mut r, false).unwrap();
            assert_eq!(resp.header("connection"), Some("keep-alive"), "{name}");
        }
    }
}

#[test]
fn connection_close_is_honoured() {
    for (name, builder) in all_configs() {
        let server = TestServer::start(builder);
        let (mut w, mut r) = open(server.addr);
        // The request after the one that asks to close must not be answered.
        w.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.header("connection"), Some("close"), "{name}");
        assert_closed(&mut r);
    }
}

#[test]
fn bodies_are_consumed_exactly_then_the_next_request_is_answered() {
    for (name, builder) in all_configs() {
        let server = TestServer::start(builder);
        let (mut w, mut r) = open(server.addr);
        w.write_all(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello worldGET /seq/after-length HTTP/1.1\r\nHost: t\r\n\r\n\
POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nwiki\r\n5\r\npedia\r\n0\r\nTrailer: t\r\n\r\n\
GET /seq/after-chunked HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
        let texts: Vec<String> = (0..4)
            .map(|_| read_response(&mut r, false).unwrap().text())
            .collect();
        assert_eq!(
            texts,
            vec![
                "hello world",
                "/seq/after-length",
                "wikipedia",
                "/seq/after-chunked"
            ],
            "{name}"
        );
    }
}

#[test]
fn head_gets_headers_without_a_body() {
    for (name, builder) in all_configs() {
        let server = TestServer::start(builder);
        let (mut w, mut r) = open(server.addr);
        w.write_all(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET /seq/next HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let head = read_response(&mut r, true).unwrap();
        assert_eq!(head.status, 200, "{name}");
        assert_eq!(head.header("content-length"), Some("14"), "{name}");
        let next = read_response(&mut r, false).unwrap();
        assert_eq!(next.text(), "/seq/next", "{name}");
    }
}

#[test]
fn a_request_trickled_byte_by_byte_is_answered() {
    for (name, builder) in all_configs() {
        let server = TestServer::start(builder);
        let (mut w, mut r) = open(server.addr);
        for b in b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc" {
            w.write_all(&[*b]).unwrap();
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        assert_eq!(
            read_response(&mut r, false).unwrap().text(),
            "abc",
            "{name}"
        );
    }
}

#[test]
fn routing_answers_404_405_and_a_handler_panic_is_a_500() {
    for (name, builder) in all_configs() {
        let server = TestServer::start(builder);
        assert_eq!(
            roundtrip(server.addr, b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n").status,
            404,
            "{name}"
        );
        let resp = roundtrip(server.addr, b"DELETE / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(resp.status, 405, "{name}");
        assert_eq!(resp.header("allow"), Some("GET, HEAD"), "{name}");
        let (mut w, mut r) = open(server.addr);
        w.write_all(b"GET /panic HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.status, 500, "{name}");
        assert_closed(&mut r);
        // The thread survived.
        assert_eq!(
            roundtrip(server.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").status,
            200,
            "{name}"
        );
        let panics: u64 = server.stats().iter().map(|s| s.panics).sum();
        assert_eq!(panics, 1, "{name}");
    }
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    for (name, builder) in all_configs() {
        let server = TestServer::start(builder);
        let (mut w, mut r) = open(server.addr);
        w.write_all(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
        )
        .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut r, &mut line).unwrap();
        assert_eq!(line, "HTTP/1.1 100 Continue\r\n", "{name}");
        line.clear();
        std::io::BufRead::read_line(&mut r, &mut line).unwrap();
        assert_eq!(line, "\r\n");
        w.write_all(b"body").unwrap();
        assert_eq!(
            read_response(&mut r, false).unwrap().text(),
            "body",
            "{name}"
        );
    }
}

#[test]
fn malformed_requests_get_400_and_close() {
    for (name, builder) in all_configs() {
        let server = TestServer::start(builder);
        let (mut w, mut r) = open(server.addr);
        w.write_all(
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.status, 400, "{name}");
        assert_eq!(resp.header("connection"), Some("close"));
        assert_closed(&mut r);
    }
}

#[test]
fn pipelined_answers_larger_than_the_output_bound_all_arrive() {
    // 40 × 64 KiB = 2.5 MiB of answers to one pipelined burst: the reader must pause at its
    // output bound and resume by itself as the client reads.
    for (name, builder) in all_configs() {
        let server = TestServer::start(builder);
        let (mut w, mut r) = open(server.addr);
        let mut burst = Vec::new();
        for _ in 0..40 {
            burst.extend_from_slice(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
        }
        burst.extend_from_slice(b"GET /seq/last HTTP/1.1\r\nHost: t\r\n\r\n");
        w.write_all(&burst).unwrap();
        for _ in 0..40 {
            let resp = read_response(&mut r, false).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(resp.body.len(), 64 * 1024, "{name}");
        }
        assert_eq!(
            read_response(&mut r, false).unwrap().text(),
            "/seq/last",
            "{name}"
        );
    }
}
