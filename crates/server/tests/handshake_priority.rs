//! Who yields the core: with handshakes on the acceptors, the acceptors lower their share
//! and the readers ask for short scheduler slices (or, on a kernel that ignores slice
//! requests, the acceptors take the idle class); with handshakes on the readers nobody asks
//! the scheduler for anything. Alone in its test binary, because it reads the scheduling of
//! every thread of the process and another test's server would be among them.

mod util;

use backlog_server::{tuning, Model, Tls};
use testkit::tls::{connect_tls, TestCert};
use util::sched::*;
use util::*;

#[test]
fn handshaking_acceptors_yield_to_readers_and_nobody_else_asks() {
    let cert = TestCert::new();
    let client = cert.client();
    let tls = || Tls::from_pem_files(&cert.cert, &cert.key).expect("certificates load");
    let shape = |handshake: &str| {
        format!("listeners=1 acceptors=2 readers=2 workers=0 handshake={handshake}")
            .parse()
            .unwrap()
    };
    let short = tuning::READER_SLICE.as_nanos() as u64;
    let honoured = sys::process::slices_honoured();

    // Handshakes on the readers: the scheduler's defaults for every thread.
    let server = TestServer::start(builder(Model::Single).topology(shape("readers")).tls(tls()));
    drop(connect_tls(server.addr, &client));
    let all = threads();
    for role in ["acceptor", "reader"] {
        let threads = of_role(&all, role);
        assert_eq!(threads.len(), 2, "{all:?}");
        assert!(
            threads
                .iter()
                .all(|s| s.policy == SCHED_OTHER && s.nice == 0 && s.slice != Some(short)),
            "{role}: {all:?}"
        );
    }
    drop(server);

    // Handshakes on the acceptors.
    let server = TestServer::start(
        builder(Model::Single)
            .topology(shape("acceptors"))
            .tls(tls()),
    );
    drop(connect_tls(server.addr, &client));
    let acceptor_ok = |s: &Sched| {
        s.nice == tuning::HANDSHAKE_NICE
            && s.policy == if honoured { SCHED_OTHER } else { SCHED_IDLE }
    };
    let reader_ok = |s: &Sched| {
        s.policy == SCHED_OTHER && s.nice == 0 && (!honoured || s.slice.is_none_or(|n| n == short))
    };
    let all = settled(|all| {
        of_role(all, "acceptor").iter().all(acceptor_ok)
            && of_role(all, "reader").iter().all(reader_ok)
    });
    let (acceptors, readers) = (of_role(&all, "acceptor"), of_role(&all, "reader"));
    assert_eq!((acceptors.len(), readers.len()), (2, 2), "{all:?}");
    assert!(acceptors.iter().all(acceptor_ok), "acceptors: {all:?}");
    assert!(readers.iter().all(reader_ok), "readers: {all:?}");
    if honoured && readers.iter().all(|s| s.slice.is_none()) {
        eprintln!("this kernel shows no se.slice: the readers' slices were not checked");
    }
    // Nothing else moved.
    assert!(
        all.iter()
            .filter(|(n, _)| !n.starts_with("acceptor") && !n.starts_with("reader"))
            .all(|(_, s)| s.policy == SCHED_OTHER && s.nice == 0),
        "{all:?}"
    );
}
