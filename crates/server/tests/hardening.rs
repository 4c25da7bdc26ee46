//! A server facing hostile or broken clients: refusals, slowloris, slow readers, overload.

mod util;

use backlog_server::Timeouts;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use util::*;

/// The same refusal whether the request arrives whole or a byte at a time.
#[test]
fn a_refusal_does_not_depend_on_how_tcp_split_the_request() {
    for (model, builder) in models() {
        let server = TestServer::start(builder);
        for raw in [
            &b"GET / HTTP/2.0\r\nHost: t\r\n\r\n"[..],
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/3.0\r\nHost: t\r\n\r\n",
        ] {
            let (mut w, mut r) = open(server.addr);
            for b in raw {
                w.write_all(&[*b]).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
            let resp = read_response(&mut r, false).unwrap();
            assert_eq!(
                resp.status,
                505,
                "{model}: {:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}

/// backlog does not tunnel: CONNECT is 405 by default, and a handler's 2xx to it ends the
/// connection instead of parsing the tunnel's bytes as requests.
#[test]
fn connect_is_refused_and_a_2xx_to_it_closes() {
    for m in MODELS {
        let model = m.name();
        let server = TestServer::start(builder(m));
        let resp = roundtrip(
            server.addr,
            b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
        );
        assert_eq!(resp.status, 405, "{model}");
        let allow = resp.header("allow").unwrap_or_default();
        assert!(
            allow.contains("GET") && !allow.contains("CONNECT"),
            "{model}: {allow}"
        );

        let yes = builder(m)
            .bind(|_req: backlog_server::Request| backlog_server::Response::text(200, "tunnel?"))
            .unwrap();
        let (mut w, mut r) = open(yes.local_addr());
        w.write_all(
            b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        let text = String::from_utf8_lossy(&all);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{model}: {text}");
        assert!(!text.contains("Content-Length"), "{model}: {text}");
        assert_eq!(text.matches("HTTP/1.1").count(), 1, "{model}: {text}");
        yes.stop();
    }
}

#[test]
fn every_bad_input_gets_its_status_and_a_close_in_every_model() {
    for (model, builder) in all_configs() {
        let server = TestServer::start(builder);
        for (what, raw, status) in BAD_INPUTS {
            let (mut w, mut r) = open(server.addr);
            w.write_all(raw).unwrap();
            let resp = read_response(&mut r, false)
                .unwrap_or_else(|e| panic!("{model}: {what}: no response: {e}"));
            assert_eq!(resp.status, *status, "{model}: {what}");
            assert_eq!(resp.header("connection"), Some("close"), "{model}: {what}");
            assert_closed(&mut r);
        }
        // Nobody else noticed.
        assert_eq!(
            roundtrip(server.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").status,
            200
        );
    }
}

#[test]
fn absolute_form_targets_are_accepted() {
    for (model, builder) in models() {
        let server = TestServer::start(builder);
        let resp = roundtrip(
            server.addr,
            b"GET http://t/seq/abs HTTP/1.1\r\nHost: t\r\n\r\n",
        );
        assert_eq!(resp.status, 200, "{model}");
        assert_eq!(resp.text(), "http://t/seq/abs", "{model}");
    }
}

#[test]
fn limits_answer_then_close_without_reading_the_rest() {
    for (model, builder) in models() {
        let limits = backlog_server::Limits {
            max_header_bytes: 1024,
            max_headers: 10,
            max_uri_bytes: 256,
            max_body_bytes: 1000,
        };
        let server = TestServer::start(builder.limits(limits));
        let long_uri = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "u".repeat(300));
        let big_head = format!(
            "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
            "h".repeat(2000)
        );
        let mut many = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
        for i in 0..11 {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        for (raw, status) in [(long_uri, 414), (big_head, 431), (many, 431)] {
            let resp = roundtrip(server.addr, raw.as_bytes());
            assert_eq!(resp.status, status, "{model}");
        }
        // A body over the limit: the 413 comes as soon as the head is read, while the client
        // is still sending, and the connection closes (lingering, so the client reads it).
        let (mut w, mut r) = open(server.addr);
        w.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n")
            .unwrap();
        let _ = w.write_all(&[b'x'; 64 * 1024]);
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.status, 413, "{model}");
        assert_eq!(resp.header("connection"), Some("close"));
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{model}: nothing after the 413");
    }
}

#[test]
fn slowloris_is_cut_by_the_header_timeout_while_others_are_served() {
    testkit::process::raise_fd_limit(); // 1,000 tricklers, both ends here
    const TRICKLERS: usize = 1000;
    let timeout = Duration::from_millis(1500);
    for (model, builder) in models() {
        let timeouts = Timeouts {
            header: timeout,
            ..Timeouts::default()
        };
        let server = TestServer::start(builder.timeouts(timeouts));
        let mut tricklers: Vec<TcpStream> = (0..TRICKLERS).map(|_| connect(server.addr)).collect();
        let started = Instant::now();
        let head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ";
        let mut sent = 0;
        let mut worst = Duration::ZERO;
        // Trickle one byte per connection every 0.5 s, and meanwhile time normal clients.
        while started.elapsed() < timeout + Duration::from_millis(1000) {
            let byte = head.get(sent).copied().unwrap_or(b'a');
            for t in tricklers.iter_mut() {
                let _ = t.write_all(&[byte]);
            }
            sent += 1;
            for _ in 0..5 {
                let t0 = Instant::now();
                let resp = roundtrip(server.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
                assert_eq!(resp.status, 200, "{model}");
                worst = worst.max(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(
            worst < Duration::from_millis(500),
            "{model}: a normal request took {worst:?}"
        );
        // Every trickler got 408 and was closed.
        for t in tricklers {
            t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut r = BufReader::new(t);
            let resp = read_response(&mut r, false).unwrap_or_else(|e| panic!("{model}: {e}"));
            assert_eq!(resp.status, 408, "{model}");
            assert_closed(&mut r);
        }
        // Lingering closes end as the clients go.
        server.wait_all_closed(model);
    }
}

#[test]
fn slow_readers_do_not_grow_memory_and_are_cut_by_the_write_timeout() {
    const CLIENTS: usize = 50;
    // Each answer is 64 KiB: far more than the kernel's socket buffers can absorb.
    const REQUESTS: usize = 2000;
    for (model, builder) in models() {
        let timeouts = Timeouts {
            write: Duration::from_millis(1000),
            ..Timeouts::default()
        };
        let server = TestServer::start(builder.timeouts(timeouts));
        let before = rss_kib();
        let writers: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let mut s = connect(server.addr);
                s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
                std::thread::spawn(move || {
                    let req = b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n";
                    let mut batch = Vec::new();
                    for _ in 0..100 {
                        batch.extend_from_slice(req);
                    }
                    // Pipeline and never read; stops when the server stops taking bytes.
                    for _ in 0..REQUESTS / 100 {
                        if s.write_all(&batch).is_err() {
                            break;
                        }
                    }
                    s // keep it open until joined
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(700));
        let grown = rss_kib().saturating_sub(before);
        // Unbounded, 50 × 2000 × 64 KiB would be 6 GiB. Bounded: 50 connections × (256 KiB
        // output bound + one answer) ≈ 16 MiB; allow for buffers and threads.
        eprintln!("{model}: RSS grew {grown} KiB with {CLIENTS} slow readers");
        assert!(grown < 96 * 1024, "{model}: RSS grew {grown} KiB");
        server.wait_all_closed(model);
        for w in writers {
            drop(w.join().unwrap());
        }
    }
}

#[test]
fn max_conns_leaves_the_next_connection_in_the_accept_queue() {
    for (model, builder) in models() {
        let server = TestServer::start(builder.max_conns(10));
        let mut held: Vec<BufReader<TcpStream>> = Vec::new();
        for _ in 0..10 {
            let s = connect(server.addr);
            let mut w = s.try_clone().unwrap();
            w.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            let mut r = BufReader::new(s);
            assert_eq!(read_response(&mut r, false).unwrap().status, 200, "{model}");
            held.push(r);
        }
        // The kernel completes the handshake; the server does not accept it.
        let eleventh = connect(server.addr);
        let mut w = eleventh.try_clone().unwrap();
        w.write_all(b"GET /seq/eleventh HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        eleventh
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut probe = [0u8; 1];
        let waited = (&eleventh).read(&mut probe);
        assert!(waited.is_err(), "{model}: the 11th was served at the limit");
        let accepted: u64 = server.stats().iter().map(|t| t.accepted).sum();
        assert_eq!(accepted, 10, "{model}");
        // One closes: the 11th is accepted and served.
        drop(held.pop());
        eleventh
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut r = BufReader::new(eleventh);
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.text(), "/seq/eleventh", "{model}");
    }
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    for (model, builder) in models() {
        let timeouts = Timeouts {
            idle: Duration::from_millis(300),
            ..Timeouts::default()
        };
        let server = TestServer::start(builder.timeouts(timeouts));
        let (mut w, mut r) = open(server.addr);
        w.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut r, false).unwrap().status, 200);
        let t0 = Instant::now();
        assert_closed(&mut r);
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(250),
            "{model}: closed after {took:?}"
        );
    }
}

#[test]
fn a_body_that_stops_arriving_gets_408() {
    for (model, builder) in models() {
        let timeouts = Timeouts {
            body: Duration::from_millis(300),
            ..Timeouts::default()
        };
        let server = TestServer::start(builder.timeouts(timeouts));
        let (mut w, mut r) = open(server.addr);
        w.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
            .unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.status, 408, "{model}");
        assert_closed(&mut r);
    }
}

/// A client that reads a large answer slowly gets all of it: the server waits for room in
/// the socket (up to the write timeout), under either I/O interface. (Under io_uring a send
/// on a non-blocking socket would fail with EAGAIN the moment the buffer filled.)
#[test]
fn a_large_answer_read_slowly_arrives_whole() {
    const BODY: usize = 16 << 20;
    for (model, builder) in models() {
        let limits = backlog_server::Limits {
            max_body_bytes: BODY as u64,
            ..backlog_server::Limits::default()
        };
        let server = TestServer::start(builder.limits(limits));
        let (mut w, mut r) = open(server.addr);
        let writer = std::thread::spawn(move || {
            w.write_all(
                format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {BODY}\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
            w.write_all(&vec![b'a'; BODY]).unwrap();
            w
        });
        // Not reading for a while: the answer fills every buffer on the way.
        std::thread::sleep(Duration::from_millis(300));
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.status, 200, "{model}");
        assert_eq!(resp.body.len(), BODY, "{model}");
        drop(writer.join().unwrap());
    }
}
