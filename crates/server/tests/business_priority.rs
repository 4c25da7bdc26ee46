//! Who yields the core to whom when the business runs in the background: the workers (a
//! native handler's pool, a service's runtime) in the `SCHED_IDLE` class and the readers on
//! short slices; by default nobody asks the scheduler for anything; a shape without workers
//! lowers nothing (its readers run the business). Alone in its test binary, because it reads
//! the scheduling of every thread of the process and another test's server would be among
//! them.

mod util;

use backlog_server::{tuning, BusinessPriority, Model, Server};
use std::time::{Duration, Instant};
use util::sched::*;
use util::*;

/// The threads that read: `reader-N`, or `loop-N` where they accept too.
fn reading(all: &[(String, Sched)]) -> Vec<Sched> {
    let mut r = of_role(all, "reader");
    r.extend(of_role(all, "loop"));
    r
}

/// A request answered: the server runs (and its threads have started).
fn answers(addr: std::net::SocketAddr, target: &str) {
    let r = roundtrip(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 200, "{target}");
}

/// The axum app of the service case: a fast route and a slow one.
fn router() -> axum::Router {
    axum::Router::new()
        .route("/", axum::routing::get(|| async { "Hello, World!\n" }))
        .route(
            "/work",
            axum::routing::get(|| async {
                let start = Instant::now();
                while start.elapsed() < Duration::from_millis(2) {
                    std::hint::spin_loop();
                }
                "worked\n"
            }),
        )
}

#[test]
fn background_business_yields_to_readers_and_the_default_asks_nothing() {
    let short = tuning::READER_SLICE.as_nanos() as u64;
    let honoured = sys::process::slices_honoured();
    let shape = || {
        "listeners=1 readers=2 workers=2"
            .parse::<backlog_server::Topology>()
            .unwrap()
    };
    let in_background = |b: backlog_server::ServerBuilder| {
        b.topology(shape())
            .business_priority(BusinessPriority::Background)
    };
    // Where a thread cannot leave the idle class again (no CAP_SYS_NICE, RLIMIT_NICE below
    // 20), the workers are not put there: a saturated server would starve its handlers.
    let background = sys::process::can_leave_idle_class();
    let worker_class = if background { SCHED_IDLE } else { SCHED_OTHER };
    let worker_ok = |s: &Sched| s.policy == worker_class;
    let reader_ok =
        |s: &Sched| s.policy == SCHED_OTHER && (!honoured || s.slice.is_none_or(|n| n == short));
    let defaults = |s: &Sched| s.policy == SCHED_OTHER && s.slice != Some(short);

    // By default: the scheduler's defaults for every thread.
    let server = TestServer::start(builder(Model::Pool).topology(shape()));
    answers(server.addr, "/work?spin_us=100");
    let all = threads();
    assert_eq!(of_role(&all, "worker").len(), 2, "{all:?}");
    assert!(all.iter().all(|(_, s)| defaults(s)), "{all:?}");
    drop(server);

    // A native handler's pool in the background.
    let server = TestServer::start(in_background(builder(Model::Pool)));
    answers(server.addr, "/work?spin_us=100");
    let all = settled(|all| {
        of_role(all, "worker").iter().all(worker_ok) && reading(all).iter().all(reader_ok)
    });
    let (workers, readers) = (of_role(&all, "worker"), reading(&all));
    assert_eq!((workers.len(), readers.len()), (2, 2), "{all:?}");
    assert!(workers.iter().all(worker_ok), "workers: {all:?}");
    assert!(readers.iter().all(reader_ok), "readers: {all:?}");
    if honoured && readers.iter().all(|s| s.slice.is_none()) {
        eprintln!("this kernel shows no se.slice: the readers' slices were not checked");
    }
    // Nothing else moved: the acceptor, the test's own threads.
    assert!(
        all.iter()
            .filter(|(n, _)| !["worker-", "reader-", "loop-"]
                .iter()
                .any(|r| n.starts_with(r)))
            .all(|(_, s)| defaults(s)),
        "{all:?}"
    );
    drop(server);

    // A service's runtime in the background: its worker threads, the same way.
    let server = in_background(
        Server::builder()
            .io(backlog_server::Io::from_env())
            .listen("127.0.0.1:0".parse().unwrap()),
    )
    .bind_service(router())
    .expect("server starts");
    answers(server.local_addr(), "/work");
    answers(server.local_addr(), "/");
    let all = settled(|all| {
        of_role(all, "worker").len() == 2
            && of_role(all, "worker").iter().all(worker_ok)
            && reading(all).iter().all(reader_ok)
    });
    let workers = of_role(&all, "worker");
    assert_eq!(workers.len(), 2, "{all:?}");
    assert!(workers.iter().all(worker_ok), "service workers: {all:?}");
    assert!(reading(&all).iter().all(reader_ok), "readers: {all:?}");
    server.stop();

    // No workers: the readers run the business, and nothing is lowered.
    let server = TestServer::start(
        builder(Model::Reuseport).business_priority(BusinessPriority::Background),
    );
    answers(server.addr, "/work?spin_us=100");
    let all = threads();
    assert!(all.iter().all(|(_, s)| defaults(s)), "{all:?}");
    drop(server);
}
