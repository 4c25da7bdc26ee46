//! Each model is a distinct arrangement of threads: who accepts, who reads, who handles.

mod util;

use backlog_server::{stats::Role, AcceptStrategy, Model, Server};
use std::io::{BufReader, Write};
use std::time::{Duration, Instant};
use util::*;

fn builder(model: Model) -> backlog_server::ServerBuilder {
    Server::builder()
        .io(backlog_server::Io::from_env())
        .listen("127.0.0.1:0".parse().unwrap())
        .model(model)
        .threads(2)
        .workers(2)
}

/// Open `n` connections at once, one request each, all held open until every answer is in.
fn burst(addr: std::net::SocketAddr, n: usize) {
    let mut conns: Vec<_> = (0..n).map(|_| connect(addr)).collect();
    for c in conns.iter_mut() {
        c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    }
    for c in conns {
        let mut r = BufReader::new(c);
        assert_eq!(read_response(&mut r, false).unwrap().status, 200);
    }
}

#[test]
fn layouts_name_every_thread_by_role() {
    let names = |model| {
        let s = TestServer::start(builder(model));
        s.server()
            .layout()
            .iter()
            .map(|t| t.name.clone())
            .collect::<Vec<_>>()
    };
    // The test app has a blocking route: every shape gets the blocking pool, pool too (its
    // blocking calls must not queue fast requests behind them on the workers).
    fn with_pool(loops: &[&'static str]) -> Vec<&'static str> {
        [
            loops,
            &["blocking-0", "blocking-1", "blocking-2", "blocking-3"][..],
        ]
        .concat()
    }
    assert_eq!(names(Model::Single), with_pool(&["loop-0"]));
    assert_eq!(
        names(Model::Dispatch),
        with_pool(&["acceptor", "reader-0", "reader-1"])
    );
    assert_eq!(
        names(Model::Pool),
        with_pool(&["worker-0", "worker-1", "loop-0"])
    );
    assert_eq!(names(Model::Shared), with_pool(&["loop-0", "loop-1"]));
    assert_eq!(names(Model::Reuseport), with_pool(&["loop-0", "loop-1"]));
}

#[test]
fn dispatch_only_the_acceptor_accepts_and_every_reader_serves() {
    for balance in [
        backlog_server::Balance::RoundRobin,
        backlog_server::Balance::LeastConns,
        backlog_server::Balance::P2c,
    ] {
        let s = TestServer::start(builder(Model::Dispatch).threads(3).balance(balance));
        burst(s.addr, 90);
        let stats = s.stats();
        let acceptor = stats.iter().find(|t| t.role == Role::Acceptor).unwrap();
        assert_eq!(acceptor.accepted, 90, "{balance:?}");
        assert_eq!(acceptor.requests, 0, "the acceptor never reads");
        for reader in stats.iter().filter(|t| t.role == Role::Reader) {
            assert_eq!(reader.accepted, 0, "{}: readers never accept", reader.name);
            assert!(
                reader.requests > 0,
                "{balance:?}: {} served nothing",
                reader.name
            );
        }
        if balance == backlog_server::Balance::RoundRobin {
            let per: Vec<u64> = stats
                .iter()
                .filter(|t| t.role == Role::Reader)
                .map(|t| t.requests)
                .collect();
            assert_eq!(
                per,
                vec![30, 30, 30],
                "round-robin deals connections evenly"
            );
        }
    }
}

#[test]
fn reuseport_and_shared_accept_on_more_than_one_thread() {
    for (name, b) in [
        ("reuseport", builder(Model::Reuseport)),
        (
            "shared/exclusive",
            builder(Model::Shared).accept(AcceptStrategy::Exclusive),
        ),
        (
            "shared/herd",
            builder(Model::Shared).accept(AcceptStrategy::Herd),
        ),
    ] {
        let s = TestServer::start(b);
        for _ in 0..10 {
            burst(s.addr, 100);
        }
        let accepting = s.stats().iter().filter(|t| t.accepted > 0).count();
        assert!(accepting > 1, "{name}: {:?}", s.stats());
    }
}

#[test]
fn pool_a_slow_request_does_not_delay_another_connection() {
    let s = TestServer::start(builder(Model::Pool));
    let slow = connect(s.addr);
    let mut slow_w = slow.try_clone().unwrap();
    let started = Instant::now();
    slow_w
        .write_all(b"GET /work?spin_us=200000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let fast_start = Instant::now();
    let resp = roundtrip(s.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let fast = fast_start.elapsed();
    assert_eq!(resp.status, 200);
    let mut r = BufReader::new(slow);
    assert_eq!(read_response(&mut r, false).unwrap().text(), "worked\n");
    let slow_took = started.elapsed();
    assert!(slow_took >= Duration::from_millis(200));
    // The fast request ran on the other worker: it did not wait for the slow one's 200 ms.
    assert!(
        fast < Duration::from_millis(100),
        "GET / took {fast:?} behind a 200 ms request"
    );
}

#[test]
fn pool_pipelined_slow_then_fast_come_back_in_request_order() {
    let s = TestServer::start(builder(Model::Pool).workers(4));
    slow_and_fast_pipelined_come_back_in_order(s.addr);
}

#[test]
fn pool_stops_reading_when_workers_are_saturated() {
    let s = TestServer::start(builder(Model::Pool).workers(1).queue_depth(1));
    let c = connect(s.addr);
    let mut w = c.try_clone().unwrap();
    let request = b"GET /work?spin_us=20000 HTTP/1.1\r\nHost: t\r\n\r\n";
    // Enough that a quarter is more than one io_uring multishot batch: the kernel fills up to
    // 32 provided buffers (128 KiB) per wake-up before the cancelled receive stops, where epoll
    // stops after the read that found the worker queue full.
    const REQUESTS: usize = 40_000;
    let total = REQUESTS * request.len();
    let writer = std::thread::spawn(move || {
        // Blocks once the kernel's queues are full: that is the backpressure.
        for _ in 0..REQUESTS {
            if w.write_all(request).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let read_so_far: u64 = s.stats().iter().map(|t| t.bytes_in).sum();
    eprintln!("pool under backpressure read {read_so_far} of {total} bytes");
    assert!(
        read_so_far < (total / 4) as u64,
        "the loop read {read_so_far} of {total} bytes while its one worker was busy"
    );
    drop(c);
    drop(s);
    let _ = writer.join();
}

#[test]
fn blocking_handlers_leave_the_event_loop_free_and_answers_keep_their_order() {
    for model in MODELS {
        let s = TestServer::start(builder(model).threads(1).workers(1).blocking_threads(2));
        let names: Vec<_> = s.server().layout().iter().map(|t| t.name.clone()).collect();
        assert!(names.contains(&"blocking-1".to_string()), "{names:?}");
        // One connection: a blocking request, then plain ones pipelined behind it.
        let c = connect(s.addr);
        let mut w = c.try_clone().unwrap();
        w.write_all(
            b"GET /sleep?ms=300 HTTP/1.1\r\nHost: t\r\n\r\nGET /seq/after HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
        // Another connection on the same (only) loop is answered while the first sleeps.
        let fast = time_a_fast_get_beside_slow_calls(s.addr);
        assert!(
            fast < Duration::from_millis(150),
            "{model:?}: GET / waited {fast:?}"
        );
        let mut r = BufReader::new(c);
        let got: Vec<String> = (0..2)
            .map(|_| read_response(&mut r, false).unwrap().text())
            .collect();
        assert_eq!(got, ["slept 300\n", "/seq/after"], "{model:?}");
    }
}

/// A handler that may block gets a blocking pool without being asked: its calls never run
/// on the event loop by accident (they used to, with the default of no pool: fast requests
/// waited behind every slow call). Handlers that never block get no pool.
#[test]
fn a_handler_that_may_block_gets_a_blocking_pool_by_default() {
    let s = TestServer::start(builder(Model::Single));
    let names: Vec<_> = s.server().layout().iter().map(|t| t.name.clone()).collect();
    assert!(names.contains(&"blocking-3".to_string()), "{names:?}");
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let c = connect(s.addr);
            (&c).write_all(b"GET /sleep?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            c
        })
        .collect();
    let fast = time_a_fast_get_beside_slow_calls(s.addr);
    assert!(
        fast < Duration::from_millis(150),
        "GET / waited {fast:?} behind blocking calls"
    );
    for c in slow {
        let resp = read_response(&mut BufReader::new(c), false).unwrap();
        assert_eq!(resp.text(), "slept 300\n");
    }

    let plain = Server::builder()
        .io(backlog_server::Io::from_env())
        .listen("127.0.0.1:0".parse().unwrap())
        .model(Model::Single)
        .bind(|_req: backlog_server::Request| backlog_server::Response::text(200, "plain"))
        .unwrap();
    assert!(
        !plain
            .layout()
            .iter()
            .any(|t| t.name.starts_with("blocking-")),
        "no pool for a handler that never blocks"
    );
    let zero = TestServer::start(builder(Model::Single).blocking_threads(0));
    assert!(!zero
        .server()
        .layout()
        .iter()
        .any(|t| t.name.starts_with("blocking-")));
    assert_eq!(
        roundtrip(zero.addr, b"GET /sleep?ms=1 HTTP/1.1\r\nHost: t\r\n\r\n").status,
        200
    );
}
