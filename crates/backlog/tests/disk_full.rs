//! The embedded store on a full disk: the server keeps serving, the store's warnings are
//! rate-limited, and once space is freed the store writes again and gives back the space its
//! write-ahead log grew into. The data directory is a small tmpfs mounted in a mount
//! namespace of the server's own, so the host's disk is never filled.

use std::process::Command;
use std::time::{Duration, Instant};

mod util;

use util::{Served, BIN};

fn post(addr: std::net::SocketAddr, text: &str) -> u16 {
    let body = serde_json::json!({ "text": text }).to_string();
    testkit::request(addr, "POST", "/comments", &[], body.as_bytes()).status
}

#[test]
#[ignore = "needs root for a mount namespace with a tmpfs (scripts/test runs it)"]
fn a_full_disk_is_logged_once_a_second_and_the_store_comes_back_when_space_is_freed() {
    let scratch = testkit::scratch("backlog-test-");
    let data = scratch.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // A 4 MiB tmpfs over the data directory, nearly filled before the server starts.
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "mount -t tmpfs -o size=4m tmpfs \"$0\" && head -c 3700000 /dev/zero > \"$0/filler\" \
             && exec \"$1\" serve --listen 127.0.0.1:0 --model single --data \"$0\"",
        )
        .arg(&data)
        .arg(BIN);
    let mut s = Served::spawn(cmd);
    // The server's own view of its data directory (its mount namespace, not ours).
    let inside = format!("/proc/{}/root{}", s.child.id(), data.display());

    // Fill the rest: 9 KB comments (the longest is 10,000 characters) from 8 clients for 3 s.
    let text = "x".repeat(9_000);
    let started = Instant::now();
    let mut statuses = Vec::new();
    std::thread::scope(|scope| {
        let clients: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let mut seen = Vec::new();
                    while started.elapsed() < Duration::from_secs(3) {
                        seen.push(post(s.addr, &text));
                    }
                    seen
                })
            })
            .collect();
        for c in clients {
            statuses.extend(c.join().unwrap());
        }
    });
    let count = |status: u16| statuses.iter().filter(|&&st| st == status).count();
    let full = count(503);
    assert!(
        full > 10 && count(201) + full == statuses.len(),
        "{} created, {full} unavailable, {} in all",
        count(201),
        statuses.len()
    );
    // The rest of the server keeps serving.
    let hello = testkit::request(s.addr, "GET", "/", &[], b"");
    assert_eq!(hello.status, 200);
    s.drain();
    let rolled_back = s.count("SQLite batch rolled back");
    let unavailable = s.count("store unavailable");
    assert!(
        rolled_back <= 5 && unavailable <= 5,
        "{full} failed writes in 3 s logged {rolled_back} rollback and {unavailable} unavailable warnings"
    );

    // Free the filler: the store writes again without a restart, and its log is truncated.
    std::fs::remove_file(format!("{inside}/filler")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while post(s.addr, "after") != 201 {
        assert!(Instant::now() < deadline, "the store did not come back");
        std::thread::sleep(Duration::from_millis(100));
    }
    s.wait_for("SQLite store writes again");
    let wal = std::fs::metadata(format!("{inside}/backlog.sqlite3-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(wal < 1024 * 1024, "write-ahead log still {wal} bytes");
    s.signal("-TERM");
    assert_eq!(s.wait_exit(), 0);
}
