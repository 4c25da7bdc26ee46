//! Graceful drain and overload, against the real binary: SIGTERM under load loses nothing
//! that was read; fd exhaustion pauses accepting without spinning a core.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::next_response;

mod util;

use util::{Served, BIN};

/// `backlog serve --listen 127.0.0.1:0 ARGS` through `sh -c`, so a test can run shell
/// set-up (`ulimit`) first.
fn serve(shell_prefix: &str, args: &str) -> Served {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "{shell_prefix} exec {BIN} serve --listen 127.0.0.1:0 {args}"
    ));
    Served::spawn(cmd)
}

#[test]
fn sigterm_under_load_answers_everything_read_refuses_new_connects_and_exits_zero() {
    for model in ["single", "dispatch", "pool", "shared", "reuseport"] {
        let mut served = serve("", &format!("--model {model} --threads 2 --workers 2"));
        let addr = served.addr;
        // Steady keep-alive load on GET /.
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let steady: Vec<_> = (0..4)
            .map(|_| {
                let (stop, answered) = (stop.clone(), answered.clone());
                std::thread::spawn(move || {
                    let s = TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                    let mut w = s.try_clone().unwrap();
                    let mut r = BufReader::new(s);
                    while !stop.load(Ordering::Relaxed) {
                        if w.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").is_err() {
                            return;
                        }
                        match next_response(&mut r) {
                            Some(resp) if resp.status == 200 => {
                                assert_eq!(resp.body, b"Hello, World!\n");
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(resp) => panic!("status {}", resp.status),
                            None => return, // closed cleanly between responses
                        }
                    }
                })
            })
            .collect();
        // Slow requests in flight when the signal comes.
        let slow: Vec<TcpStream> = (0..6)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                s.write_all(b"GET /work?spin_us=300000 HTTP/1.1\r\nHost: t\r\n\r\n")
                    .unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(150));
        served.signal("-TERM");
        for s in slow {
            let mut r = BufReader::new(s);
            let resp = next_response(&mut r)
                .unwrap_or_else(|| panic!("{model}: a slow request was dropped"));
            assert_eq!(resp.status, 200, "{model}");
            assert_eq!(resp.body, b"spun 300000 us\n", "{model}");
            assert!(
                next_response(&mut r).is_none(),
                "{model}: closed after the answer"
            );
        }
        stop.store(true, Ordering::Relaxed);
        for t in steady {
            t.join()
                .unwrap_or_else(|_| panic!("{model}: a steady client saw a broken response"));
        }
        assert!(answered.load(Ordering::Relaxed) > 0, "{model}");
        let refused = TcpStream::connect(addr);
        assert!(
            matches!(&refused, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
            "{model}: a connect after the drain was {refused:?}"
        );
        assert_eq!(served.wait_exit(), 0, "{model}");
    }
}

#[test]
fn the_drain_deadline_cuts_what_is_left_and_still_exits_zero() {
    let mut served = serve("", "--model single --drain-timeout 300ms");
    // A request that never completes: its head is cut off mid-way.
    let mut s = TcpStream::connect(served.addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost:").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    served.signal("-TERM");
    let t0 = Instant::now();
    assert_eq!(served.wait_exit(), 0);
    assert!(t0.elapsed() >= Duration::from_millis(250));
    let log = &served.seen;
    assert!(
        log.iter()
            .any(|l| l.contains("drain deadline") && l.contains("cut=1")),
        "{log:#?}"
    );
}

#[test]
fn fd_exhaustion_pauses_accepting_without_spinning_and_recovers() {
    // 64 descriptors: the server's own few, then EMFILE. --max-conns is set above that so
    // the kernel limit, not ours, is what stops accept.
    let served = serve("ulimit -n 64;", "--model single --max-conns 1000");
    let mut clients: Vec<TcpStream> = (0..120)
        .map(|_| {
            let mut s = TcpStream::connect(served.addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = served.cpu_ticks();
    std::thread::sleep(Duration::from_secs(1));
    let spent = served.cpu_ticks() - before;
    // A spinning accept loop would burn ~100 ticks a second.
    assert!(spent < 20, "{spent} ticks of CPU in one second at EMFILE");
    // Answer and close the ones it holds; the queued ones are then accepted and answered.
    // Oldest first: each one closed frees a descriptor for one still queued.
    let mut served_count = 0;
    for s in clients.drain(..) {
        let mut r = BufReader::new(s);
        if next_response(&mut r).is_some_and(|resp| resp.status == 200) {
            served_count += 1;
        }
    }
    assert_eq!(served_count, 120);
}

#[test]
fn an_idle_keep_alive_connection_may_send_one_more_request_during_the_drain() {
    let mut s = serve("", "--model single --drain-timeout 8s");
    let busy = TcpStream::connect(s.addr).unwrap();
    let idle = TcpStream::connect(s.addr).unwrap();
    for c in [&busy, &idle] {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    let (mut busy_r, mut idle_r) = (
        BufReader::new(busy.try_clone().unwrap()),
        BufReader::new(idle.try_clone().unwrap()),
    );
    let request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    for (mut c, r) in [(&busy, &mut busy_r), (&idle, &mut idle_r)] {
        c.write_all(request).unwrap();
        assert_eq!(next_response(r).unwrap().status, 200);
    }
    s.signal("-TERM");
    s.wait_for("shutting down");
    let started = Instant::now();
    // The client could not know the server is draining: its next request is answered,
    // and told to close, instead of meeting a closed connection.
    (&busy).write_all(request).unwrap();
    let resp = next_response(&mut busy_r).expect("answered during the drain");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(
        next_response(&mut busy_r).is_none(),
        "closed after the answer"
    );
    // The one that stays idle is closed once the grace (1 s here) is over.
    assert!(next_response(&mut idle_r).is_none());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert_eq!(s.wait_exit(), 0);
}
