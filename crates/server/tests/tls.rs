//! TLS on every shape: real servers on loopback, real TLS clients (rustls here; curl,
//! openssl and Python's ssl in `tls_clients`), the hardening cases of a TLS port.

mod util;

use backlog_server::{Model, Timeouts, Tls};
use std::io::{BufReader, Read, Write};
use std::time::{Duration, Instant};
use testkit::tls::{client_trusting, connect_tls, tls_roundtrip, TestCert};
use util::*;

fn tls_server(builder: backlog_server::ServerBuilder, cert: &TestCert) -> TestServer {
    let tls = Tls::from_pem_files(&cert.cert, &cert.key).expect("certificates load");
    TestServer::start(builder.tls(tls))
}

/// What every thread's TLS counters add up to.
fn tls_totals(server: &TestServer) -> (u64, u64, u64, std::collections::BTreeMap<String, u64>) {
    let (mut full, mut resumed, mut in_flight) = (0, 0, 0);
    let mut failures = std::collections::BTreeMap::new();
    for t in server.stats() {
        full += t.tls.full.count();
        resumed += t.tls.resumed.count();
        in_flight += t.tls.in_flight;
        for (k, v) in t.tls.failures {
            *failures.entry(k).or_insert(0) += v;
        }
    }
    (full, resumed, in_flight, failures)
}

/// A `POST /echo` of `body` that closes the connection.
fn echo_request(body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

fn failures(server: &TestServer, cause: &str) -> u64 {
    tls_totals(server).3.get(cause).copied().unwrap_or(0)
}

#[test]
fn every_shape_serves_keep_alive_pipelined_and_large_bodies_over_tls() {
    let cert = TestCert::new();
    let client = cert.client();
    for (name, builder) in all_configs() {
        let server = tls_server(builder, &cert);
        let mut s = connect_tls(server.addr, &client);
        assert_eq!(
            s.conn.alpn_protocol(),
            Some(&b"http/1.1"[..]),
            "{name}: ALPN"
        );
        // Keep-alive, then a pipeline of three in one record.
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut r = BufReader::new(s);
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (200, "Hello, World!\n"),
            "{name}"
        );
        r.get_mut()
            .write_all(
                b"GET /seq/1 HTTP/1.1\r\nHost: t\r\n\r\nGET /seq/2 HTTP/1.1\r\nHost: t\r\n\r\n\
GET /seq/3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            )
            .unwrap();
        for i in 1..=3 {
            let resp = read_response(&mut r, false).unwrap();
            assert_eq!(
                resp.text(),
                format!("/seq/{i}"),
                "{name}: pipelined in order"
            );
        }
        // The close came with close_notify: a clean end of stream, not a truncation.
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).expect("a clean TLS close");
        assert!(rest.is_empty(), "{name}");

        // A 1 MiB body each way: records split and sends that the kernel takes in parts.
        let body = vec![b'x'; 1 << 20];
        let resp = tls_roundtrip(server.addr, &client, &echo_request(&body));
        assert_eq!(resp.status, 200, "{name}");
        assert_eq!(resp.body.len(), body.len(), "{name}: the echo whole");
        let (full, resumed, _, _) = tls_totals(&server);
        assert_eq!(
            (full, resumed),
            (1, 1),
            "{name}: one full handshake, then a resumption"
        );
        server.wait_all_closed(&name);
        assert_eq!(tls_totals(&server).2, 0, "{name}: nothing left in flight");
    }
}

#[test]
fn a_second_connection_resumes_and_is_counted_as_resumed() {
    let cert = TestCert::new();
    let client = cert.client();
    for m in [Model::Single, Model::Reuseport, Model::Pool] {
        let server = tls_server(builder(m), &cert);
        for _ in 0..3 {
            let resp = tls_roundtrip(
                server.addr,
                &client,
                b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            );
            assert_eq!(resp.status, 200);
        }
        let (full, resumed, _, _) = tls_totals(&server);
        assert_eq!(full + resumed, 3, "{}", m.name());
        assert!(resumed >= 1, "{}: a client with a ticket resumes", m.name());
    }
}

#[test]
fn plain_http_on_the_tls_port_gets_a_plain_400_and_is_counted() {
    let cert = TestCert::new();
    for (name, builder) in models() {
        let server = tls_server(builder, &cert);
        let resp = roundtrip(server.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(resp.status, 400, "{name}");
        assert!(
            resp.text()
                .contains("plain HTTP request was sent to HTTPS port"),
            "{name}: {}",
            resp.text()
        );
        assert_eq!(resp.header("connection"), Some("close"), "{name}");
        assert_eq!(failures(&server, "plain_http"), 1, "{name}");
        server.wait_all_closed(name);
    }
}

#[test]
fn a_bad_client_hello_is_refused_and_counted_and_the_next_client_is_served() {
    let cert = TestCert::new();
    let client = cert.client();
    let server = tls_server(builder(Model::Single), &cert);
    // A handshake record holding a ClientHello of length 0.
    let mut s = connect(server.addr);
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00])
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert_eq!(
        got.first(),
        Some(&0x15),
        "an alert record came back: {got:?}"
    );
    assert_eq!(failures(&server, "bad_handshake"), 1);
    let resp = tls_roundtrip(
        server.addr,
        &client,
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
}

#[test]
fn a_stalled_handshake_is_cut_by_the_header_timeout_and_a_reset_one_is_counted() {
    let cert = TestCert::new();
    let client = cert.client();
    let timeouts = Timeouts {
        header: Duration::from_millis(300),
        ..Timeouts::default()
    };
    for (name, builder) in models() {
        let server = tls_server(builder.timeouts(timeouts), &cert);
        // The first five bytes of a ClientHello record, then nothing (a TLS slowloris).
        let mut stalled: Vec<_> = (0..4).map(|_| connect(server.addr)).collect();
        for s in &mut stalled {
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).unwrap();
        }
        // Meanwhile others are served at once.
        let t0 = Instant::now();
        let resp = tls_roundtrip(
            server.addr,
            &client,
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(resp.status, 200, "{name}");
        assert!(
            t0.elapsed() < Duration::from_millis(250),
            "{name}: not held"
        );
        for s in &mut stalled {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        }
        assert_eq!(failures(&server, "timeout"), 4, "{name}");
        // A client that resets mid-handshake.
        let mut s = connect(server.addr);
        s.write_all(&[0x16, 0x03, 0x01]).unwrap();
        reset(s);
        wait_until(
            &format!("{name}: the reset handshake counted"),
            Duration::from_secs(5),
            || failures(&server, "closed") == 1,
        );
        server.wait_all_closed(name);
        assert_eq!(tls_totals(&server).2, 0, "{name}: nothing in flight");
    }
}

#[test]
fn a_reload_serves_the_new_certificate_and_drops_no_connection() {
    let cert = TestCert::new();
    let old_client = cert.client();
    let tls = Tls::from_pem_files(&cert.cert, &cert.key).unwrap();
    let server = TestServer::start(builder(Model::Reuseport).tls(tls.clone()));
    let mut kept = BufReader::new(connect_tls(server.addr, &old_client));
    let old_pem = cert.cert_pem.clone();
    let cert = cert.renew();
    tls.reload().expect("the new files load");
    assert_eq!(tls.reloads(), 1);
    // The connection made before goes on.
    for _ in 0..3 {
        kept.get_mut()
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut kept, false).unwrap().status, 200);
    }
    // A client that trusts only the new certificate is served...
    let resp = tls_roundtrip(
        server.addr,
        &cert.client(),
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    // ...and one that trusts only the old one is shown the new one, which it refuses.
    let only_old = client_trusting(&[&old_pem]);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(only_old, name).unwrap();
    let mut sock = connect(server.addr);
    let mut refused = false;
    while conn.is_handshaking() {
        if conn.complete_io(&mut sock).is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "the old certificate is no longer presented");
    wait_until("the refusal counted", Duration::from_secs(5), || {
        failures(&server, "peer_alert") == 1
    });
}

/// Shapes whose acceptors run the handshakes.
fn on_acceptors() -> Vec<(&'static str, backlog_server::ServerBuilder)> {
    [
        "listeners=1 acceptors=1 readers=2 workers=0 handshake=acceptors",
        "listeners=1 acceptors=2 readers=2 workers=0 handshake=acceptors",
        "listeners=2 acceptors=2 readers=3 workers=2 handshake=acceptors",
    ]
    .into_iter()
    .map(|t| (t, builder(Model::Single).topology(t.parse().unwrap())))
    .collect()
}

#[test]
fn acceptors_run_the_handshakes_and_readers_serve_the_established_sessions() {
    let cert = TestCert::new();
    let client = cert.client();
    for (name, builder) in on_acceptors() {
        let server = tls_server(builder, &cert);
        let layout = server.server().layout().to_vec();
        assert!(
            layout
                .iter()
                .filter(|l| l.name.starts_with("acceptor"))
                .all(|l| l.handshakes),
            "{name}: {layout:?}"
        );
        for round in 0..4 {
            // Keep-alive and pipelined requests on sessions the acceptors established.
            let mut r = BufReader::new(connect_tls(server.addr, &client));
            r.get_mut()
                .write_all(
                    b"GET /seq/1 HTTP/1.1\r\nHost: t\r\n\r\nGET /seq/2 HTTP/1.1\r\nHost: t\r\n\r\n",
                )
                .unwrap();
            for i in 1..=2 {
                assert_eq!(
                    read_response(&mut r, false).unwrap().text(),
                    format!("/seq/{i}")
                );
            }
            // A request in the same flight as the client's Finished: it comes over with the
            // session.
            let s = testkit::tls::connect_tls_sending(
                server.addr,
                &client,
                b"GET /seq/3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            );
            let resp = read_response(&mut BufReader::new(s), false).unwrap();
            assert_eq!(resp.text(), "/seq/3", "{name}");
            // A body larger than a record, after the handshake.
            let body = vec![b'y'; 200_000];
            let resp = tls_roundtrip(server.addr, &client, &echo_request(&body));
            assert_eq!(
                (resp.status, resp.body.len()),
                (200, body.len()),
                "{name} round {round}"
            );
        }
        let stats = server.stats();
        let by = |prefix: &str| -> u64 {
            stats
                .iter()
                .filter(|t| t.name.starts_with(prefix))
                .map(|t| t.tls.full.count() + t.tls.resumed.count())
                .sum()
        };
        assert_eq!(by("acceptor"), 12, "{name}: the acceptors shook hands");
        assert_eq!(by("reader"), 0, "{name}: the readers did not");
        let requests: u64 = stats
            .iter()
            .filter(|t| t.name.starts_with("reader") || t.name.starts_with("worker"))
            .map(|t| t.requests)
            .sum();
        assert!(requests >= 16, "{name}: the readers served ({requests})");
        // Plain HTTP and a stalled handshake are the acceptors' to refuse and cut.
        let resp = roundtrip(server.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(resp.status, 400, "{name}");
        server.wait_all_closed(name);
        assert_eq!(tls_totals(&server).2, 0, "{name}: nothing in flight");
    }
}

/// The hardening suite's bad inputs, and a request split at every byte, over TLS: through a
/// terminator each raw-TCP case becomes the same bytes in records, split as they were sent.
#[test]
fn the_hardening_cases_hold_over_tls_in_every_model() {
    let cert = TestCert::new();
    for (name, builder) in models() {
        let server = tls_server(builder, &cert);
        let relay = testkit::tls::Terminator::start(server.addr, cert.client());
        for (what, raw, status) in BAD_INPUTS {
            let (mut w, mut r) = open(relay.addr);
            w.write_all(raw).unwrap();
            let resp = read_response(&mut r, false)
                .unwrap_or_else(|e| panic!("{name}: {what}: no response: {e}"));
            assert_eq!(resp.status, *status, "{name}: {what}");
            assert_eq!(resp.header("connection"), Some("close"), "{name}: {what}");
            assert_closed(&mut r);
        }
        // A request and a refusal, each split at every byte (a record per byte).
        for (raw, status) in [
            (
                &b"GET /seq/split HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"[..],
                200,
            ),
            (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        ] {
            let (mut w, mut r) = open(relay.addr);
            for b in raw {
                w.write_all(&[*b]).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            let resp = read_response(&mut r, false).unwrap();
            assert_eq!(resp.status, status, "{name}: split at every byte");
        }
        // Nobody else noticed.
        let resp = roundtrip(
            relay.addr,
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(resp.status, 200, "{name}");
    }
}
