//! Time spent in the kernel's queues, as the server counts it from receive timestamps: a
//! connection held in the accept queue, a request held in the receive queue behind a busy
//! loop, and plain keep-alive traffic that waits for nothing.

mod util;

use backlog_server::queue_wait::WaitSnapshot;
use backlog_server::{Model, QueueTiming};
use std::io::Write;
use std::time::{Duration, Instant};
use util::*;

/// Both waits, summed over every thread.
fn waits(server: &TestServer) -> (WaitSnapshot, WaitSnapshot) {
    let mut accept = WaitSnapshot::default();
    let mut receive = WaitSnapshot::default();
    for t in server.stats() {
        accept.merge(&t.accept_wait);
        receive.merge(&t.receive_wait);
    }
    (accept, receive)
}

/// Wait until the kernel stamps packets: it turns stamping on a moment after the first
/// socket on the host asks, so a fresh test process's first packets may go uncounted. Returns
/// the waits counted so far (the warm-up's), to subtract.
fn warm_up(server: &TestServer) -> (WaitSnapshot, WaitSnapshot) {
    wait_until("receive timestamps", Duration::from_secs(5), || {
        roundtrip(
            server.addr,
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        waits(server).1.count() > 0
    });
    waits(server)
}

/// Every wait counted, added up: with one slow wait among fast ones, at least the slow one
/// (bucket bounds are too coarse to read a single wait back).
fn total(s: &WaitSnapshot) -> Duration {
    Duration::from_micros(s.sum_us)
}

#[test]
fn a_connection_held_in_the_accept_queue_counts_its_wait_in_every_model() {
    for model in MODELS {
        let server = TestServer::start(builder(model).max_conns(1));
        let (accept0, receive0) = warm_up(&server);
        // The one connection allowed, held open.
        let (mut held, mut held_r) = open(server.addr);
        held.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        read_response(&mut held_r, false).unwrap();
        // The second waits in the accept queue with its request already sent.
        let (mut second, mut second_r) = open(server.addr);
        second
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        drop((held, held_r));
        let t0 = Instant::now();
        assert_eq!(read_response(&mut second_r, false).unwrap().status, 200);
        assert!(t0.elapsed() < Duration::from_secs(2));
        let (accept, receive) = waits(&server);
        let (accept, receive) = (accept.since(&accept0), receive.since(&receive0));
        let (a, r) = (total(&accept), total(&receive));
        eprintln!(
            "{model:?}: accept-queue wait {a:?}, receive-queue wait {r:?} counts {} {}",
            accept.count(),
            receive.count()
        );
        assert!(
            a >= Duration::from_millis(450),
            "{model:?}: accept wait {a:?}"
        );
        assert!(
            r >= Duration::from_millis(450),
            "{model:?}: kernel wait {r:?}"
        );
        drop((second, second_r));
        server.stop();
    }
}

#[test]
fn a_request_behind_a_busy_loop_counts_its_receive_queue_wait() {
    let server = TestServer::start(builder(Model::Single).threads(1));
    warm_up(&server);
    // Accepted and served once, so only the receive queue can hold its next request.
    let (mut idle, mut idle_r) = open(server.addr);
    idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    read_response(&mut idle_r, false).unwrap();
    let (mut busy, mut busy_r) = open(server.addr);
    busy.write_all(b"GET /work?spin_us=300000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(30));
    idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    read_response(&mut busy_r, false).unwrap();
    read_response(&mut idle_r, false).unwrap();
    let (_, receive) = waits(&server);
    let r = total(&receive);
    eprintln!("behind a 300 ms handler: receive-queue wait {r:?}");
    assert!(r >= Duration::from_millis(250), "{r:?}");
    drop((idle, idle_r, busy, busy_r));
    server.stop();
}

#[test]
fn keep_alive_traffic_waits_well_under_a_millisecond() {
    for model in MODELS {
        let server = TestServer::start(builder(model).queue_timing(QueueTiming::On));
        let (accept0, receive0) = warm_up(&server);
        let (mut w, mut r) = open(server.addr);
        for _ in 0..200 {
            w.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            read_response(&mut r, false).unwrap();
        }
        let (accept, receive) = waits(&server);
        let (accept, receive) = (accept.since(&accept0), receive.since(&receive0));
        assert_eq!(
            receive.count(),
            200,
            "{model:?}: every request counted once"
        );
        assert_eq!(accept.count(), 1, "{model:?}: one connection");
        let p50 = receive.quantile(0.5).unwrap();
        let p99 = receive.quantile(0.99).unwrap();
        eprintln!("{model:?}: keep-alive receive-queue wait p50 {p50:?} p99 {p99:?}");
        assert!(p50 < Duration::from_millis(1), "{model:?}: p50 {p50:?}");
        drop((w, r));
        server.stop();
    }
}

/// The default: every connection's first request, and one in 16 of the rest, each counted
/// for 16 — so the counts still estimate every request.
#[test]
fn sampled_timing_counts_every_connection_and_estimates_the_requests() {
    for model in MODELS {
        let server = TestServer::start(builder(model));
        let (accept0, receive0) = warm_up(&server);
        let mut conns: Vec<_> = (0..4).map(|_| open(server.addr)).collect();
        for _ in 0..100 {
            for (w, r) in &mut conns {
                w.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
                read_response(r, false).unwrap();
            }
        }
        let (accept, receive) = waits(&server);
        let (accept, receive) = (accept.since(&accept0), receive.since(&receive0));
        eprintln!(
            "{model:?}: 400 requests on 4 connections, sampled: {} counted",
            receive.count()
        );
        assert_eq!(accept.count(), 4, "{model:?}: every connection");
        // 4 first requests, then 396 sampled one in 16 per thread (each thread's count
        // starts anywhere in its cycle), each sample counted for 16 — unless a read came
        // in a round after a wait of 1 ms or more, or more than 100 ms into a loop's round:
        // then it is timed and counted for 1.
        let n = receive.count();
        assert!(
            (4 + 396 - 2 * 16..=4 + 396 + 2 * 16).contains(&n),
            "{model:?}: {n}"
        );
        assert!(receive.quantile(0.5).unwrap() < Duration::from_millis(1));
        drop(conns);
        server.stop();
    }
}

#[test]
fn with_timing_off_nothing_is_counted() {
    let server = TestServer::start(builder(Model::Single).queue_timing(QueueTiming::Off));
    assert_eq!(
        roundtrip(server.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").status,
        200
    );
    let (accept, receive) = waits(&server);
    assert_eq!((accept.count(), receive.count()), (0, 0));
    server.stop();
}
