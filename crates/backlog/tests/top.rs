//! `backlog top` as a person sees it: run under tmux at 80×24, screen captured.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_backlog");

fn have_tmux() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A server with an admin endpoint on a free port; returns it and the admin address.
fn serve(model: &str) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--model",
            model,
        ])
        .env("RUST_LOG", "info")
        .env(
            "BACKLOG_DATA",
            std::env::temp_dir().join(format!("backlog-test-{}", std::process::id())),
        )
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let admin = loop {
        let line = lines.next().expect("admin line").unwrap();
        if line.contains("admin listening") {
            break line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .unwrap()
                .to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, admin)
}

/// Run `backlog top ADDR` in a detached 80×24 tmux session and return the screen once it
/// contains `needle` (or the last screen after a timeout).
fn screen(session: &str, addr: &str, needle: &str) -> String {
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", session])
        .output();
    let ok = Command::new("tmux")
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
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", session])
            .output()
            .unwrap();
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        if last.contains(needle) {
            break;
        }
    }
    let _ = Command::new("tmux")
        .args(["send-keys", "-t", session, "q"])
        .status();
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", session])
        .output();
    last
}

#[test]
fn top_shows_the_model_the_listener_gauge_and_the_thread_table() {
    if !have_tmux() {
        eprintln!("skipped: tmux is not installed (scripts/test installs it)");
        return;
    }
    let (mut server, admin) = serve("dispatch");
    let screen = screen("backlog-top-test", &admin, "reader-1");
    let _ = server.kill();
    let _ = server.wait();
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
    assert!(screen.lines().count() <= 24 && screen.lines().all(|l| l.chars().count() <= 80));
}

#[test]
fn top_without_a_server_says_so_and_keeps_trying() {
    if !have_tmux() {
        eprintln!("skipped: tmux is not installed (scripts/test installs it)");
        return;
    }
    // A port nobody listens on: bind, read it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let screen = screen("backlog-top-none", &addr, "retrying");
    assert!(screen.contains(&format!("cannot reach {addr}")), "{screen}");
    assert!(screen.contains("retrying"), "{screen}");
}
