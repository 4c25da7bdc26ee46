//! Who yields the core: an acceptor that runs TLS handshakes puts its own thread in the
//! idle scheduling class, so readers preempt it the moment they wake; nothing else changes
//! class. Alone in its test binary, because it reads the scheduling class of every thread
//! of the process and another test's server would be among them.

mod util;

use backlog_server::{Model, Tls};
use testkit::tls::{connect_tls, TestCert};
use util::*;

/// Linux's number for the `SCHED_IDLE` policy (`/proc/<pid>/task/<tid>/stat`, field 41).
const SCHED_IDLE: u32 = 5;
const SCHED_OTHER: u32 = 0;

/// (thread name, scheduling policy) of every thread of this process.
fn policies() -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let path = task.path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue; // the thread has just exited
        };
        // Fields after the parenthesised name start at field 3; the policy is field 41.
        let rest = &stat[stat.rfind(')').unwrap() + 1..];
        let policy = rest
            .split_whitespace()
            .nth(41 - 3)
            .unwrap()
            .parse()
            .unwrap();
        out.push((comm.trim().to_string(), policy));
    }
    out
}

fn of_role(all: &[(String, u32)], role: &str) -> Vec<u32> {
    all.iter()
        .filter(|(name, _)| name.starts_with(role))
        .map(|(_, p)| *p)
        .collect()
}

#[test]
fn a_handshaking_acceptor_yields_to_the_readers_and_nobody_else_does() {
    let cert = TestCert::new();
    let client = cert.client();
    let tls = || Tls::from_pem_files(&cert.cert, &cert.key).expect("certificates load");
    let shape = |handshake: &str| {
        format!("listeners=1 acceptors=2 readers=2 workers=0 handshake={handshake}")
            .parse()
            .unwrap()
    };

    // Handshakes on the readers: every thread keeps the normal class.
    let server = TestServer::start(builder(Model::Single).topology(shape("readers")).tls(tls()));
    drop(connect_tls(server.addr, &client));
    let all = policies();
    assert_eq!(of_role(&all, "acceptor"), vec![SCHED_OTHER; 2], "{all:?}");
    assert_eq!(of_role(&all, "reader"), vec![SCHED_OTHER; 2], "{all:?}");
    drop(server);

    // Handshakes on the acceptors: they, and only they, take the idle class.
    let server = TestServer::start(
        builder(Model::Single)
            .topology(shape("acceptors"))
            .tls(tls()),
    );
    drop(connect_tls(server.addr, &client));
    // Each acceptor moves itself as its loop starts: wait for the slower one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut all = policies();
    while of_role(&all, "acceptor") != vec![SCHED_IDLE; 2] && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        all = policies();
    }
    assert_eq!(of_role(&all, "acceptor"), vec![SCHED_IDLE; 2], "{all:?}");
    assert_eq!(of_role(&all, "reader"), vec![SCHED_OTHER; 2], "{all:?}");
    assert!(
        all.iter()
            .filter(|(name, _)| !name.starts_with("acceptor"))
            .all(|(_, p)| *p == SCHED_OTHER),
        "{all:?}"
    );
}
