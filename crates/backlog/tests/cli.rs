//! The `backlog` binary as a user runs it: flags, exit codes, logs, thread names, signals.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

mod util;

use util::{Served, BIN};

/// `GET target`: the status line's code and the body, as text.
fn get(addr: SocketAddr, target: &str) -> String {
    let resp = testkit::request(addr, "GET", target, &[], b"");
    format!("{} {}", resp.status, resp.text())
}

fn run_to_end(args: &[&str]) -> (i32, String) {
    let data = testkit::scratch("backlog-test-");
    let out = Command::new(BIN)
        .args(args)
        .env("BACKLOG_DATA", data.path())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn each_model_names_its_threads_by_role() {
    let cases: &[(&str, &[&str])] = &[
        ("single", &["loop-0"]),
        ("dispatch", &["acceptor", "reader-0", "reader-1"]),
        ("pool", &["loop-0", "worker-0", "worker-1"]),
        ("shared", &["loop-0", "loop-1"]),
        ("reuseport", &["loop-0", "loop-1"]),
    ];
    for (model, expected) in cases {
        let served = Served::start(&[
            "--listen",
            "127.0.0.1:0",
            "--model",
            model,
            "--threads",
            "2",
            "--workers",
            "2",
        ]);
        assert!(get(served.addr, "/").contains("Hello, World!"), "{model}");
        let names = served.thread_names();
        for name in *expected {
            assert!(names.contains(&name.to_string()), "{model}: {names:?}");
        }
        let roles = ["loop-", "acceptor", "reader-", "worker-"];
        let serving: Vec<_> = names
            .iter()
            .filter(|n| roles.iter().any(|r| n.starts_with(r)))
            .collect();
        assert_eq!(serving.len(), expected.len(), "{model}: {names:?}");
        let layout = served.seen.join("\n");
        assert!(
            layout.contains(&format!("model=\"{model}\""))
                || layout.contains(&format!("model={model}")),
            "{layout}"
        );
        assert!(
            layout.contains("accepts"),
            "the start log says who accepts: {layout}"
        );
    }
}

#[test]
fn sigterm_drains_and_exits_zero_with_the_thread_table() {
    let mut served = Served::start(&[
        "--listen",
        "127.0.0.1:0",
        "--model",
        "dispatch",
        "--threads",
        "2",
    ]);
    assert!(get(served.addr, "/").starts_with("200 "));
    // An idle keep-alive connection must not hold the shutdown up.
    let _idle = TcpStream::connect(served.addr).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    served.signal("-TERM");
    assert_eq!(served.wait_exit(), 0, "{:#?}", served.seen);
    let log = served.seen.join("\n");
    assert!(
        log.contains("thread") && log.contains("acceptor") && log.contains("reader-1"),
        "{log}"
    );
    assert!(
        TcpStream::connect(served.addr).is_err(),
        "the port is closed after exit"
    );
}

#[test]
fn a_bad_flag_is_one_line_and_exit_2() {
    let (code, err) = run_to_end(&["serve", "--model", "bogus"]);
    assert_eq!(code, 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("bogus"), "{err}");
    let (code, err) = run_to_end(&["serve", "--no-such-flag"]);
    assert_eq!(code, 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn an_address_in_use_is_one_line_and_exit_2() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let (code, err) = run_to_end(&["serve", "--listen", &addr, "--model", "single"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("already in use"), "{err}");
}

#[test]
fn a_second_server_on_a_port_in_use_is_refused_in_every_model_even_with_reuseport() {
    // SO_REUSEPORT would let a second process of the same user join the first's port and
    // split its traffic; a server started by mistake must be refused instead.
    for (first, second) in [
        ("reuseport", "reuseport"),
        ("reuseport", "single"),
        ("single", "reuseport"),
        ("shared", "reuseport"),
    ] {
        let mut served = Served::start(&["--listen", "127.0.0.1:0", "--model", first]);
        let addr = served.addr.to_string();
        let (code, err) = run_to_end(&["serve", "--listen", &addr, "--model", second]);
        assert_eq!(code, 2, "{first} then {second}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("already in use"), "{err}");
        // The first still serves, alone.
        assert!(get(served.addr, "/").starts_with("200 "));
        served.signal("-TERM");
        assert_eq!(served.wait_exit(), 0);
    }
}

#[test]
fn every_interface_is_served_but_logged() {
    let mut served = Served::start(&["--listen", "0.0.0.0:0", "--model", "single"]);
    assert!(
        served.seen.iter().any(|l| l.contains("every interface")),
        "{:#?}",
        served.seen
    );
    let port = served.addr.port();
    assert!(get(SocketAddr::from(([127, 0, 0, 1], port)), "/").starts_with("200 "));
    served.signal("-INT");
    assert_eq!(served.wait_exit(), 0);
}

#[test]
fn ipv6_loopback_works() {
    assert!(
        std::net::TcpListener::bind("[::1]:0").is_ok(),
        "this machine has no IPv6 loopback (::1)"
    );
    for model in ["single", "reuseport", "dispatch"] {
        let served = Served::start(&["--listen", "[::1]:0", "--model", model, "--threads", "2"]);
        assert!(served.addr.is_ipv6());
        assert!(get(served.addr, "/").contains("Hello, World!"), "{model}");
    }
}

#[test]
fn the_echo_app_returns_the_body_for_any_method_and_path() {
    let served = Served::start(&[
        "--listen",
        "127.0.0.1:0",
        "--app",
        "echo",
        "--model",
        "pool",
    ]);
    let mut s = TcpStream::connect(served.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"PATCH /any/where HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\nhello"), "{out}");
}

/// A chunked body the echo streams back, whose framing breaks before any of it came: the
/// body's refusal (400, its reason), then the close — not a wait for the body timeout.
#[test]
fn the_echo_app_answers_a_broken_chunked_body_with_its_refusal() {
    for model in ["single", "pool"] {
        let served = Served::start(&["--listen", "127.0.0.1:0", "--app", "echo", "--model", model]);
        let mut s = TcpStream::connect(served.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        s.write_all(b"3\nabc\n0\n\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 400 "), "{model}: {out}");
        assert!(out.contains("Connection: close\r\n"), "{model}: {out}");
        assert!(
            out.ends_with("invalid chunked body: bare LF\n"),
            "{model}: {out}"
        );
    }
}

/// A count the preset does not take is said at start, not silently dropped.
#[test]
fn a_count_the_model_does_not_take_is_warned_about() {
    for (args, said) in [
        (
            ["--model", "pool", "--threads", "3"],
            "--threads 3 sets nothing here",
        ),
        (
            ["--model", "single", "--threads", "4"],
            "--threads 4 sets nothing here",
        ),
        (
            ["--model", "reuseport", "--workers", "2"],
            "--workers 2 sets nothing here",
        ),
    ] {
        let mut all = vec!["serve"];
        all.extend(args);
        all.push("--dry-run");
        let (code, err) = run_to_end(&all);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(err.contains(said), "{args:?}: {err}");
    }
    let (_, err) = run_to_end(&[
        "serve",
        "--model",
        "dispatch",
        "--threads",
        "3",
        "--dry-run",
    ]);
    assert!(!err.contains("sets nothing"), "{err}");
}

#[test]
fn work_burns_the_time_it_is_asked() {
    let served = Served::start(&["--listen", "127.0.0.1:0", "--model", "single"]);
    let start = std::time::Instant::now();
    let out = get(served.addr, "/work?spin_us=50000");
    assert!(
        out.starts_with("200 ") && out.contains("spun 50000 us"),
        "{out}"
    );
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert!(get(served.addr, "/work").contains("400"));
    assert!(get(served.addr, "/nope").contains("404"));
}

#[test]
fn defer_accept_still_serves() {
    let served = Served::start(&[
        "--listen",
        "127.0.0.1:0",
        "--model",
        "reuseport",
        "--defer-accept",
    ]);
    assert!(get(served.addr, "/").contains("Hello, World!"));
}

#[test]
fn a_public_admin_address_needs_admin_public() {
    let (code, err) = run_to_end(&["serve", "--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--admin-public"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// `--dry-run` prints what a shape means; a shape the rules refuse is one line and exit 2.
#[test]
fn topologies_are_shown_before_they_run_and_refused_with_their_rule() {
    let (code, _) = run_to_end(&[
        "serve",
        "--topology",
        "listeners=1 acceptors=3 readers=5 workers=8",
        "--dry-run",
    ]);
    assert_eq!(code, 0);
    let out = Command::new(BIN)
        .args([
            "serve",
            "--topology",
            "readers=5 acceptors=3 workers=8",
            "--dry-run",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "acceptor-2",
        "reader-4",
        "worker-7",
        "round-robin",
        "request order",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let out = Command::new(BIN)
        .args([
            "serve",
            "--model",
            "dispatch",
            "--threads",
            "2",
            "--dry-run",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("  acceptor: ") && text.contains("reader-1"),
        "{text}"
    );
    for (shape, rule) in [
        ("listeners=2 readers=3", "listeners must be 1"),
        ("listeners=2 acceptors=3 readers=1", "equal acceptors"),
        ("readers=0", "at least one reader"),
        ("threads=4", "unknown key"),
        ("readers=lots", "whole number"),
    ] {
        let (code, stderr) = run_to_end(&["serve", "--listen", "127.0.0.1:0", "--topology", shape]);
        assert_eq!(code, 2, "{shape}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{shape}: {stderr}");
        assert!(stderr.contains(rule), "{shape}: {stderr}");
    }
}

/// `--io uring` where the host denies io_uring (here a seccomp filter, as container
/// runtimes install, makes io_uring_setup fail with EPERM): one line naming the cause, exit
/// 2, never a silent fallback; `--io auto` serves on epoll and says so.
#[test]
fn io_uring_denied_by_seccomp_exits_2_naming_the_cause() {
    let data = testkit::scratch("backlog-test-");
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--io", "uring"])
        .env("BACKLOG_DATA", data.path());
    sys::process::refuse_syscall(&mut cmd, libc::SYS_io_uring_setup);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("io_uring")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("--io uring") && lines[0].contains("EPERM"),
        "{stderr}"
    );

    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--io", "auto"]);
    sys::process::refuse_syscall(&mut cmd, libc::SYS_io_uring_setup);
    let mut served = Served::spawn(cmd);
    let line = served.wait_for("--io auto chose");
    assert!(line.contains("epoll"), "{line}");
    assert!(get(served.addr, "/").contains("Hello, World!"));
    let line = served.wait_for("backlog serving");
    assert!(line.contains("io=epoll"), "{line}");
}

/// The start line names the I/O interface whichever way it was chosen (the flag, the
/// BACKLOG_IO default, or `auto`).
#[test]
fn the_start_line_names_the_io_interface() {
    let mut served = Served::start(&["--listen", "127.0.0.1:0", "--io", "epoll"]);
    let line = served.wait_for("backlog serving");
    assert!(line.contains("io=epoll"), "{line}");
    served.signal("-TERM");
    assert_eq!(served.wait_exit(), 0);
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("BACKLOG_IO", "epoll");
    let mut served = Served::spawn(cmd);
    let line = served.wait_for("backlog serving");
    assert!(line.contains("io=epoll"), "{line}");
    served.signal("-TERM");
    assert_eq!(served.wait_exit(), 0);
}

#[test]
#[ignore = "needs io_uring (scripts/test runs it where the kernel allows it)"]
fn the_start_line_says_uring_when_it_runs() {
    let mut served = Served::start(&["--listen", "127.0.0.1:0", "--io", "uring"]);
    let line = served.wait_for("backlog serving");
    assert!(line.contains("io=uring"), "{line}");
    served.signal("-TERM");
    assert_eq!(served.wait_exit(), 0);
}

/// 400 clients that connect to the admin endpoint and never send a request (more than its
/// 256 connections) hold `/metrics` up for about a second, not the 10 s of the serving
/// listener's header timeout: an operator keeps the view when it is under attack.
#[test]
fn the_admin_endpoint_answers_while_idle_clients_crowd_it() {
    let mut served = Served::start(&["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]);
    let admin = served.admin_addr();
    let crowd: Vec<_> = (0..400)
        .map(|_| std::net::TcpStream::connect(admin).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let started = std::time::Instant::now();
    let resp = testkit::request(admin, "GET", "/metrics", &[], b"");
    let waited = started.elapsed();
    assert_eq!(resp.status, 200);
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    eprintln!("/metrics behind 400 idle admin clients: {waited:?}");
    drop(crowd);
    served.signal("-TERM");
    assert_eq!(served.wait_exit(), 0);
}

/// `--dry-run` prints the very threads the server then starts and logs, for every preset,
/// a topology, and both built-in apps (hello has a blocking pool, echo none).
#[test]
fn dry_run_prints_the_layout_the_server_runs() {
    let topologies: [&[&str]; 2] = [
        &["--topology", "listeners=1 acceptors=3 readers=5 workers=8"],
        &["--topology", "listeners=2 acceptors=2 readers=2"],
    ];
    for shape in util::PRESETS.into_iter().chain(topologies) {
        for app in ["hello", "echo", "arena"] {
            let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--app", app];
            args.extend_from_slice(shape);
            let data = testkit::scratch("backlog-test-");
            let out = Command::new(BIN)
                .args(&args)
                .arg("--dry-run")
                .env("BACKLOG_DATA", data.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "{shape:?}");
            let planned: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.starts_with("  "))
                .map(|l| l.trim().to_string())
                .collect();
            let mut served = Served::start(&args[1..]);
            served.signal("-TERM");
            assert_eq!(served.wait_exit(), 0);
            let running: Vec<String> = served
                .seen
                .iter()
                .filter_map(|l| {
                    l.split_once("server:   ")
                        .map(|(_, t)| t.trim().to_string())
                })
                .collect();
            assert!(!planned.is_empty(), "{shape:?} {app}");
            assert_eq!(planned, running, "{shape:?} {app}");
        }
    }
}
