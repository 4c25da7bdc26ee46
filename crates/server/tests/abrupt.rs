//! Clients that go away: a FIN right behind the request, a FIN mid-request, a reset at every
//! stage. The server answers what was asked before the FIN, closes at once, and keeps nothing
//! for a peer that is gone — in every model.

mod util;

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};
use util::*;

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

/// `printf 'GET / …' | nc`: the request and the FIN in one burst. Every request that arrived
/// before the FIN is answered, then the server closes — not 60 s later at the idle timeout.
#[test]
fn a_fin_behind_the_requests_gets_the_answers_then_a_close() {
    const CLIENTS: usize = 200;
    for (model, builder) in models() {
        let server = TestServer::start(builder);
        let clients: Vec<(TcpStream, usize)> = (0..CLIENTS)
            .map(|i| {
                let mut s = connect(server.addr);
                let n = 1 + i % 2;
                s.write_all(&GET.repeat(n)).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                (s, n)
            })
            .collect();
        let mut worst = Duration::ZERO;
        for (s, n) in clients {
            let mut r = BufReader::new(s);
            for _ in 0..n {
                let resp = read_response(&mut r, false).unwrap();
                assert_eq!(resp.status, 200, "{model}");
            }
            let answered = Instant::now();
            r.get_ref()
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut rest = [0u8; 16];
            match r.read(&mut rest) {
                Ok(0) => {}
                other => panic!("{model}: not closed within 100 ms of the answer: {other:?}"),
            }
            worst = worst.max(answered.elapsed());
        }
        let closed_in = server.wait_all_closed(model);
        eprintln!("{model}: {CLIENTS} clients answered and closed; worst wait for the close after the answer {worst:?}, server empty {closed_in:?} later");
    }
}

/// A FIN after part of a head or part of a body: nobody is left to answer, so no 408 ten
/// seconds later — the connection is closed at once and counted as aborted.
#[test]
fn a_fin_mid_request_closes_at_once_and_is_counted() {
    let partial: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Half",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly part",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    ];
    for (model, builder) in models() {
        let server = TestServer::start(builder);
        for raw in partial {
            let mut s = connect(server.addr);
            s.write_all(raw).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut out = Vec::new();
            let t0 = Instant::now();
            s.read_to_end(&mut out)
                .unwrap_or_else(|e| panic!("{model}: not closed: {e}"));
            assert!(
                out.is_empty(),
                "{model}: answered a peer that left: {out:?}"
            );
            assert!(t0.elapsed() < Duration::from_millis(500), "{model}");
        }
        server.wait_all_closed(model);
        assert_eq!(server.aborted(), partial.len() as u64, "{model}");
    }
}

/// What a client sends before it resets: part of a head, part of a body, or requests for
/// 2.5 MiB of answers that it never reads.
/// Returns how many bytes it sent.
fn send_stage(s: &mut TcpStream, stage: usize) -> u64 {
    let bytes: Vec<u8> = match stage % 3 {
        0 => b"GET / HTTP/1.1\r\nHost: t\r\nX-Cut: ".to_vec(),
        1 => b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\nabc".to_vec(),
        _ => b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n".repeat(40),
    };
    s.write_all(&bytes).map_or(0, |()| bytes.len() as u64)
}

/// 500 clients that reset mid-head, mid-body, or while their answers are being written —
/// half of them right behind their bytes (data and RST arrive together), half once the server
/// has read them: every connection is closed and freed within a second of the last reset,
/// not after the header, body or write timeout.
#[test]
fn resets_at_every_stage_free_the_connection_at_once() {
    const CLIENTS: usize = 500;
    for (model, builder) in models() {
        let server = TestServer::start(builder);
        let aborted_before = server.aborted();
        for i in 0..CLIENTS / 2 {
            let mut s = connect(server.addr);
            send_stage(&mut s, i);
            reset(s);
        }
        let mut clients = Vec::with_capacity(CLIENTS / 2);
        for i in 0..CLIENTS / 2 {
            let mut s = connect(server.addr);
            send_stage(&mut s, i);
            clients.push(s);
        }
        // Let the server read what was sent (and start writing the large answers).
        wait_until(
            &format!("{model}: all accepted"),
            Duration::from_secs(10),
            || server.stats().iter().map(|t| t.accepted).sum::<u64>() >= CLIENTS as u64,
        );
        std::thread::sleep(Duration::from_millis(200));
        for s in clients {
            reset(s);
        }
        let last_reset = Instant::now();
        let took = wait_until(
            &format!("{model}: open connections back to 0 after {CLIENTS} resets"),
            Duration::from_secs(1),
            || server.open() == 0,
        );
        eprintln!(
            "{model}: {CLIENTS} resets, all closed {took:?} after the last ({:?} since); aborted {}",
            last_reset.elapsed(),
            server.aborted() - aborted_before
        );
        assert_eq!(
            roundtrip(server.addr, GET).status,
            200,
            "{model}: still serving"
        );
    }
}
