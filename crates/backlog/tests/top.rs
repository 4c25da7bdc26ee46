//! `backlog top` as a person sees it: run under tmux at 80×24, screen captured.

use std::process::Command;
use std::time::{Duration, Instant};

mod util;

use util::{Served, BIN};

fn have_tmux() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// tmux with its server socket in a scratch directory of this test's (not /tmp/tmux-UID):
/// the test leaves nothing behind, and runs of it never share a tmux server.
fn tmux(dir: &testkit::TempDir) -> Command {
    let mut cmd = Command::new("tmux");
    cmd.arg("-S").arg(dir.path().join("tmux.sock"));
    cmd
}

/// A server with an admin endpoint on a free port, started with `args`; returns it and the
/// admin address.
fn serve(args: &[&str]) -> (Served, String) {
    let mut all = vec!["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut served = Served::start(&all);
    let admin = served.admin_addr().to_string();
    (served, admin)
}

fn require_tmux() {
    assert!(
        have_tmux(),
        "tmux is not installed (scripts/test installs it)"
    );
}

/// The screen fits 80×24: every thread shown or counted, no line cut.
fn assert_fits(screen: &str) {
    assert!(
        screen.lines().count() <= 24 && screen.lines().all(|l| l.chars().count() <= 80),
        "{screen}"
    );
}

/// Run `backlog top ADDR` in a detached 80×24 tmux session and return the screen once it
/// contains `needle` (or the last screen after a timeout).
fn screen(session: &str, addr: &str, needle: &str) -> String {
    screen_after_keys(session, addr, needle, &[])
}

/// As [`screen`], pressing `keys` (tmux key names) once `needle` shows, then returning the
/// screen a moment later.
fn screen_after_keys(session: &str, addr: &str, needle: &str, keys: &[&str]) -> String {
    let dir = testkit::scratch("backlog-top-");
    let tmux = || tmux(&dir);
    let ok = tmux()
        .args(["new-session", "-d", "-s", session, "-x", "80", "-y", "24"])
        .arg(format!("{BIN} top {addr}"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "tmux new-session");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        let out = tmux()
            .args(["capture-pane", "-p", "-t", session])
            .output()
            .unwrap();
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        if last.contains(needle) {
            break;
        }
    }
    if !keys.is_empty() {
        let _ = tmux()
            .args(["send-keys", "-t", session])
            .args(keys)
            .status();
        std::thread::sleep(Duration::from_millis(500));
        let out = tmux()
            .args(["capture-pane", "-p", "-t", session])
            .output()
            .unwrap();
        last = String::from_utf8_lossy(&out.stdout).into_owned();
    }
    let _ = tmux().args(["send-keys", "-t", session, "q"]).status();
    std::thread::sleep(Duration::from_millis(300));
    // This test's own tmux server, and whatever still runs in it.
    let _ = tmux().arg("kill-server").output();
    last
}

#[test]
#[ignore = "needs tmux (scripts/test installs it and runs this)"]
fn top_shows_the_model_the_listener_gauge_and_the_thread_table() {
    require_tmux();
    let (server, admin) = serve(&["--model", "dispatch"]);
    let screen = screen("backlog-top-test", &admin, "reader-1");
    drop(server);
    assert!(screen.contains("model dispatch"), "{screen}");
    assert!(screen.contains("accept queue"), "{screen}");
    assert!(
        screen.contains("/4096") || screen.contains("0/"),
        "the gauge label: {screen}"
    );
    assert!(screen.contains("SYN_RECV"), "{screen}");
    for thread in ["acceptor", "reader-0", "reader-1"] {
        assert!(screen.contains(thread), "{thread}: {screen}");
    }
    assert!(screen.contains("imbalance"), "{screen}");
    assert_fits(&screen);
}

#[test]
#[ignore = "needs tmux (scripts/test installs it and runs this)"]
fn top_without_a_server_says_so_and_keeps_trying() {
    require_tmux();
    // A port nobody listens on.
    let addr = testkit::free_addr().to_string();
    let screen = screen("backlog-top-none", &addr, "retrying");
    assert!(screen.contains(&format!("cannot reach {addr}")), "{screen}");
    assert!(screen.contains("retrying"), "{screen}");
}

#[test]
#[ignore = "needs tmux (scripts/test installs it and runs this)"]
fn top_against_a_supervisor_shows_every_worker_process() {
    require_tmux();
    let mut server = Served::start(&[
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--model",
        "reuseport",
        "--threads",
        "1",
        "--processes",
        "2",
    ]);
    let admin = server.admin_addr().to_string();
    // Both workers up before the screen is read.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server
        .seen
        .iter()
        .filter(|l| l.contains("worker serving"))
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "{:#?}", server.seen);
        std::thread::sleep(Duration::from_millis(50));
        server.drain();
    }
    let screen = screen("backlog-top-procs", &admin, "processes: 2");
    drop(server);
    assert!(screen.contains("processes: 2"), "{screen}");
    assert_eq!(screen.matches("serving").count(), 2, "{screen}");
    assert!(screen.contains("gen 1"), "{screen}");
    assert!(screen.contains("w0.g1/loop-0"), "{screen}");
    assert!(screen.contains("w1.g1/loop-0"), "{screen}");
}

/// No terminal (a pipe, a CI job): one line and exit 2, not a panic and a backtrace.
#[test]
fn top_without_a_terminal_says_so_and_exits_2() {
    let out = Command::new(BIN)
        .args(["top", "127.0.0.1:9"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("needs a terminal"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// More threads than 24 lines hold: the table says how many there are, sums the ones below
/// the screen, and scrolls to them; nothing passes 80 columns, the header line included.
#[test]
#[ignore = "needs tmux (scripts/test installs it and runs this)"]
fn top_with_more_threads_than_lines_scrolls_and_counts_the_rest() {
    require_tmux();
    let (served, admin) = serve(&["--model", "reuseport", "--threads", "24"]);
    let first = screen("backlog-top-many", &admin, "more");
    let last = screen_after_keys(
        "backlog-top-scroll",
        &admin,
        "more",
        &["End", "PageDown", "PageDown", "PageDown"],
    );
    drop(served);
    for screen in [&first, &last] {
        assert_fits(screen);
    }
    assert!(
        first.contains("of 28"),
        "24 loops and the blocking pool: {first}"
    );
    assert!(
        first.contains("(23 more)"),
        "the other sockets are summed: {first}"
    );
    assert!(
        first.contains("loop-0 ") && first.contains("more"),
        "{first}"
    );
    assert!(
        first.contains("loop-0..23"),
        "the diagram names every loop: {first}"
    );
    assert!(
        first.lines().next().unwrap().contains("model reuseport"),
        "{first}"
    );
    assert!(
        last.contains("blocking-3") && last.contains("–28 of 28"),
        "scrolled to the last thread: {last}"
    );
    assert!(
        first.contains("server ") && last.contains("server "),
        "the whole server's row stays: {last}"
    );
}

/// Any shape is drawn, within 80 columns: sockets, acceptors, readers, workers.
#[test]
#[ignore = "needs tmux (scripts/test installs it and runs this)"]
fn top_draws_a_hybrid_topology() {
    require_tmux();
    let (served, admin) = serve(&["--topology", "listeners=1 acceptors=3 readers=5 workers=8"]);
    let screen = screen("backlog-top-hybrid", &admin, "worker-0..7");
    drop(served);
    assert!(
        screen.contains("acceptor-0..2 =round-robin=> reader-0..4 ⇄ worker-0..7"),
        "{screen}"
    );
    assert!(screen.contains("model custom"), "{screen}");
    assert_fits(&screen);
}

#[test]
#[ignore = "needs tmux (scripts/test installs it and runs this)"]
fn top_shows_tls_handshakes_and_failures() {
    require_tmux();
    let cert = testkit::tls::TestCert::new();
    let (c, k) = (cert.cert.to_str().unwrap(), cert.key.to_str().unwrap());
    let (server, admin) = serve(&["--model", "single", "--tls-cert", c, "--tls-key", k]);
    // A handshake, and plain HTTP refused on the TLS port.
    let _ = testkit::tls::tls_roundtrip(
        server.addr,
        &cert.client(),
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let _ = testkit::roundtrip(server.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let screen = screen("backlog-top-tls", &admin, "plain_http 1");
    drop(server);
    assert!(screen.contains("TLS handshakes"), "{screen}");
    assert!(screen.contains("plain_http 1"), "{screen}");
    assert!(screen.contains("in flight 0"), "{screen}");
    assert_fits(&screen);
}
