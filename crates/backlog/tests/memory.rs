//! Memory comes back after large requests, measured on the `backlog serve` process itself.

mod util;

use std::io::Write;
use std::time::Duration;
use testkit::process::rss_kib;
use testkit::{open, read_response, reset, roundtrip, wait_until};
use util::Served;

const MIB: usize = 1024 * 1024;
const MODELS: [&str; 5] = ["single", "dispatch", "pool", "shared", "reuseport"];

/// 200 echoes of 1 MiB bodies from 50 clients at once (a quarter of them reset before reading
/// their answer), then idle: the server's RSS returns to within 32 MiB of where it started, in
/// every model. Buffers grown for one large request are freed, not parked on a reader's free
/// list, and the allocator gives them back to the kernel.
#[test]
fn rss_returns_after_large_requests() {
    const ECHOES: usize = 200;
    const CLIENTS: usize = 50;
    let body = vec![b'm'; MIB];
    for model in MODELS {
        let mut served = Served::start(&[
            "--listen",
            "127.0.0.1:0",
            "--app",
            "echo",
            "--model",
            model,
            "--threads",
            "2",
            "--workers",
            "2",
        ]);
        let pid = Some(served.child.id());
        for _ in 0..20 {
            let resp = roundtrip(served.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(resp.status, 200);
        }
        let before = rss_kib(pid);
        let mut peak = before;
        std::thread::scope(|scope| {
            let clients: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    let (body, addr) = (&body, served.addr);
                    scope.spawn(move || {
                        for i in 0..ECHOES / CLIENTS {
                            let (mut w, mut r) = open(addr);
                            let head = format!(
                                "POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                                body.len()
                            );
                            w.write_all(head.as_bytes()).unwrap();
                            w.write_all(body).unwrap();
                            if (c + i) % 4 == 0 {
                                reset(w);
                                continue;
                            }
                            let resp = read_response(&mut r, false).unwrap();
                            assert_eq!(resp.body.len(), MIB);
                        }
                    })
                })
                .collect();
            while clients.iter().any(|t| !t.is_finished()) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        // Idle: every connection closed (the lingering ones too), the readers gone round.
        let settled = wait_until(
            &format!("{model}: RSS back within 32 MiB"),
            Duration::from_secs(5),
            || rss_kib(pid) <= before + 32 * 1024,
        );
        let after = rss_kib(pid);
        eprintln!(
            "{model}: RSS before {} MiB, peak {} MiB, after {} MiB ({settled:?} after the last echo)",
            before / 1024,
            peak / 1024,
            after / 1024
        );
        served.signal("-TERM");
        assert_eq!(served.wait_exit(), 0);
    }
}
