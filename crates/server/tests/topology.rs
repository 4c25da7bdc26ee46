//! Any shape of listeners × acceptors × readers × workers serves like the presets: every
//! request answered, in order per connection, by the threads the shape names.

mod util;

use backlog_server::{AcceptStrategy, Balance, Server, Topology};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use util::*;

fn start(t: Topology) -> TestServer {
    TestServer::start(
        Server::builder()
            .io(backlog_server::Io::from_env())
            .listen("127.0.0.1:0".parse().unwrap())
            .topology(t),
    )
}

fn shape(listeners: usize, acceptors: usize, readers: usize, workers: usize) -> Topology {
    Topology::new(listeners, acceptors, readers, workers).unwrap()
}

/// `conns` connections, each sending `requests` pipelined at once; every answer must be its
/// own, in order.
fn pipelined(addr: std::net::SocketAddr, conns: usize, requests: usize) {
    let mut open: Vec<(TcpStream, BufReader<TcpStream>)> = (0..conns)
        .map(|_| {
            let s = connect(addr);
            let r = BufReader::new(s.try_clone().unwrap());
            (s, r)
        })
        .collect();
    for (c, (w, _)) in open.iter_mut().enumerate() {
        let batch: String = (0..requests)
            .map(|n| format!("GET /seq/{c}/{n} HTTP/1.1\r\nHost: t\r\n\r\n"))
            .collect();
        w.write_all(batch.as_bytes()).unwrap();
    }
    for (c, (_, r)) in open.iter_mut().enumerate() {
        for n in 0..requests {
            let resp = read_response(r, false).expect("an answer");
            assert_eq!(resp.status, 200);
            assert_eq!(resp.text(), format!("/seq/{c}/{n}"));
        }
    }
}

/// Threads of this process by name (other tests' servers included).
fn thread_names() -> BTreeSet<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .collect()
}

/// A valid shape: listeners fit the acceptors (or readers) by the rules.
fn valid_shape() -> impl Strategy<Value = Topology> {
    (
        0usize..=4,
        1usize..=4,
        0usize..=4,
        any::<bool>(),
        0usize..3,
        0usize..3,
    )
        .prop_map(
            |(acceptors, readers, workers, reuseport, accept, balance)| {
                let accepting = if acceptors > 0 { acceptors } else { readers };
                let listeners = if reuseport { accepting } else { 1 };
                Topology::new(listeners, acceptors, readers, workers)
                    .expect("a shape by the rules")
                    .with_accept(
                        [
                            AcceptStrategy::Exclusive,
                            AcceptStrategy::Mutex,
                            AcceptStrategy::Herd,
                        ][accept],
                    )
                    .with_balance([Balance::RoundRobin, Balance::LeastConns, Balance::P2c][balance])
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// 50 connections × 20 pipelined requests, answered in order, by the threads the shape
    /// names — for random shapes of up to 4 of each role.
    #[test]
    fn any_valid_shape_serves_pipelined_requests_in_order(t in valid_shape()) {
        let server = start(t);
        pipelined(server.addr, 50, 20);
        let names = thread_names();
        for layout in t.threads() {
            // comm is cut at 15 bytes.
            let comm: String = layout.name.chars().take(15).collect();
            prop_assert!(names.contains(&comm), "{t}: no thread {comm}");
        }
        let layout: Vec<String> = server.server().layout().iter().map(|l| l.name.clone()).collect();
        let expected: Vec<String> = t.threads().into_iter().map(|l| l.name).collect();
        prop_assert_eq!(&layout[..expected.len()], &expected[..], "{}", t);
        let answered: u64 = server
            .stats()
            .iter()
            .filter(|s| s.role != backlog_server::stats::Role::Worker)
            .map(|s| s.requests)
            .sum();
        prop_assert_eq!(answered, 50 * 20);
    }
}

/// Three acceptors (on one socket with EPOLLEXCLUSIVE, or a socket each) feeding five
/// readers: every acceptor takes connections,
/// every reader serves, and when the acceptors stop (one after another, at shutdown) no reader
/// ends its drain while another acceptor may still hand it connections.
#[test]
fn several_acceptors_feed_readers_and_drain_together() {
    testkit::process::raise_fd_limit(); // hundreds of connections, both ends here
                                        // (Not the accept mutex here: like nginx's, it leaves the lock with the thread that has
                                        // it while load is light, so one acceptor may take every connection.)
    for t in [shape(1, 3, 5, 0), shape(3, 3, 5, 0)] {
        let server = start(t);
        // Connections that come in bursts, so every acceptor gets a turn.
        let mut clients = Vec::new();
        for _ in 0..30 {
            let burst: Vec<_> = (0..20).map(|_| connect(server.addr)).collect();
            for s in burst {
                let mut r = BufReader::new(s.try_clone().unwrap());
                (&s).write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                    .unwrap();
                assert_eq!(read_response(&mut r, false).unwrap().status, 200);
                clients.push((s, r));
            }
        }
        let stats = server.stats();
        for a in stats.iter().filter(|s| s.name.starts_with("acceptor-")) {
            assert!(
                a.accepted > 0,
                "{t}: {} accepted nothing: {stats:?}",
                a.name
            );
        }
        for r in stats.iter().filter(|s| s.name.starts_with("reader-")) {
            assert!(r.requests > 0, "{t}: {} served nothing: {stats:?}", r.name);
        }
        // Requests in flight when the server stops are all answered.
        let slow = b"GET /work?spin_us=20000 HTTP/1.1\r\nHost: t\r\n\r\n";
        let read_before: u64 = server.stats().iter().map(|s| s.bytes_in).sum();
        for (s, _) in clients.iter_mut().take(100) {
            s.write_all(slow).unwrap();
        }
        wait_until("the slow requests read", Duration::from_secs(5), || {
            let read: u64 = server.stats().iter().map(|s| s.bytes_in).sum();
            read >= read_before + 100 * slow.len() as u64
        });
        let stopping = std::thread::spawn(move || server.stop());
        for (_, r) in clients.iter_mut().take(100) {
            let resp = read_response(r, false).expect("answered during the drain");
            assert_eq!(resp.text(), "worked\n", "{t}");
        }
        stopping.join().unwrap();
    }
}

/// Several readers sharing one worker pool: a slow request on one connection does not delay
/// another connection's, and one connection's pipelined answers keep their order with slow
/// and fast mixed.
#[test]
fn readers_share_a_worker_pool_in_order() {
    let server = start(shape(1, 0, 3, 4));
    let slow = connect(server.addr);
    (&slow)
        .write_all(b"GET /work?spin_us=200000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // The slow request is with a worker (its reader has read it) before the fast ones come.
    wait_until("the slow request is read", Duration::from_secs(10), || {
        server.stats().iter().map(|t| t.bytes_in).sum::<u64>() > 0
    });
    let fast_start = Instant::now();
    for _ in 0..5 {
        assert_eq!(
            roundtrip(server.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").status,
            200
        );
    }
    let fast = fast_start.elapsed();
    assert_eq!(
        read_response(&mut BufReader::new(&slow), false)
            .unwrap()
            .text(),
        "worked\n"
    );
    assert!(
        fast < Duration::from_millis(150),
        "5 fast requests took {fast:?}"
    );

    slow_and_fast_pipelined_come_back_in_order(server.addr);
}

/// A shape the rules refuse cannot be made (the error names the rule), and a preset asked for
/// with no threads is refused at bind.
#[test]
fn invalid_shapes_cannot_be_made_and_a_preset_without_threads_is_refused_at_bind() {
    for ((l, a, r, w), rule) in [
        ((2, 0, 3, 0), "listeners must be 1"),
        ((2, 3, 1, 0), "equal acceptors"),
        ((1, 0, 0, 0), "at least one reader"),
    ] {
        let err = Topology::new(l, a, r, w).unwrap_err();
        assert!(err.to_string().contains(rule), "{err}");
    }
    let err = Server::builder()
        .io(backlog_server::Io::from_env())
        .listen("127.0.0.1:0".parse().unwrap())
        .model(backlog_server::Model::Dispatch)
        .threads(0)
        .bind(app())
        .err()
        .expect("dispatch with no readers was accepted");
    assert!(err.to_string().contains("at least 1"), "{err}");
}
