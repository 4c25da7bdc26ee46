//! `serve --config FILE` and `serve --print-config`, run as a user runs them.

use std::process::Command;

mod util;

use util::{Served, BIN};

/// `backlog ARGS` to its end: exit code, stdout, stderr. The data directory is the same
/// path for every run (`--print-config` shows it), and never created by these commands.
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("BACKLOG_DATA", "/nonexistent/backlog-data")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn print_config_round_trips_through_config() {
    let dir = testkit::scratch("backlog-config-");
    let file = dir.path().join("backlog.toml");
    let (code, printed, _) = run(&[
        "serve",
        "--print-config",
        "--model",
        "pool",
        "--max-body-bytes",
        "2MiB",
        "--defer-accept",
    ]);
    assert_eq!(code, 0);
    assert!(printed.contains("\nmodel = \"pool\"\n"), "{printed}");
    assert!(
        printed.contains("\nmax-body-bytes = \"2MiB\"\n"),
        "{printed}"
    );
    assert!(printed.contains("\ndefer-accept = true\n"), "{printed}");
    assert!(
        printed.contains("\nbacklog = 4096\n"),
        "defaults are written out too"
    );
    std::fs::write(&file, &printed).unwrap();
    let (code, again, _) = run(&[
        "serve",
        "--config",
        file.to_str().unwrap(),
        "--print-config",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        again, printed,
        "the printed file reads back to the same configuration"
    );
}

#[test]
fn an_unknown_key_is_refused_by_name() {
    let dir = testkit::scratch("backlog-config-");
    let file = dir.path().join("backlog.toml");
    std::fs::write(&file, "model = \"pool\"\nmax_body = \"1MiB\"\n").unwrap();
    let (code, _, err) = run(&["serve", "--config", file.to_str().unwrap(), "--dry-run"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown key `max_body`"), "{err}");
    std::fs::write(&file, "backlog = \"many\"\n").unwrap();
    let (code, _, err) = run(&["serve", "--config", file.to_str().unwrap(), "--dry-run"]);
    assert_eq!(
        code, 2,
        "a bad value is refused as the flag would be: {err}"
    );
    assert!(
        err.contains("`backlog`") && err.contains("\"many\""),
        "{err}"
    );
}

#[test]
fn flags_override_the_file() {
    let dir = testkit::scratch("backlog-config-");
    let file = dir.path().join("backlog.toml");
    std::fs::write(&file, "model = \"pool\"\nworkers = 3\n").unwrap();
    let path = file.to_str().unwrap();
    let (_, out, _) = run(&["serve", "--config", path, "--dry-run"]);
    assert!(out.contains("workers=3"), "the file applies: {out}");
    let (_, out, _) = run(&[
        "serve",
        "--config",
        path,
        "--model",
        "dispatch",
        "--dry-run",
    ]);
    assert!(out.starts_with("topology dispatch"), "the flag wins: {out}");
    let (code, out, err) = run(&[
        "serve",
        "--config",
        path,
        "--topology",
        "readers=2",
        "--dry-run",
    ]);
    assert_eq!(
        code, 0,
        "a flag that rules out file keys wins over them: {err}"
    );
    assert!(out.contains("readers=2"), "{out}");
}

#[test]
fn a_served_configuration_comes_from_the_file() {
    let dir = testkit::scratch("backlog-config-");
    let file = dir.path().join("backlog.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:0\"\nmodel = \"single\"\nmax-body-bytes = \"16B\"\n",
    )
    .unwrap();
    let mut served = Served::start(&["--config", file.to_str().unwrap()]);
    let resp = testkit::request(served.addr, "POST", "/", &[], &[b'x'; 17]);
    assert_eq!(resp.status, 413, "the file's body limit is in force");
    served.signal("-TERM");
    assert_eq!(served.wait_exit(), 0);
}

/// A bad value in a file names the file and the key, not a flag the user never typed; a
/// `--print-config` file with `topology` added starts (its `topology` replaces its `model`).
#[test]
fn file_errors_name_the_file_and_a_files_topology_replaces_its_model() {
    let dir = testkit::scratch("backlog-config-");
    let file = dir.path().join("backlog.toml");
    std::fs::write(&file, "max-body-bytes = \"lots\"\n").unwrap();
    let (code, _, err) = run(&["serve", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(file.to_str().unwrap()), "{err}");
    assert!(
        err.contains("`max-body-bytes`") && err.contains("\"lots\""),
        "{err}"
    );
    assert!(!err.contains("--max-body-bytes"), "{err}");

    let (code, printed, _) = run(&["serve", "--print-config"]);
    assert_eq!(code, 0);
    assert!(printed.contains("\nmodel = "), "{printed}");
    std::fs::write(
        &file,
        format!("{printed}\ntopology = \"listeners=1 acceptors=1 readers=2\"\n"),
    )
    .unwrap();
    let (code, out, err) = run(&["serve", "--config", file.to_str().unwrap(), "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("acceptor"), "{out}");
}

/// Mistakes at the command line read as what they are.
#[test]
fn command_line_mistakes_say_what_is_wrong() {
    let (code, _, err) = run(&["serve", "--threads", "0"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--threads") && err.contains("at least 1"),
        "{err}"
    );
    assert!(!err.contains("listeners=0"), "{err}");

    let dir = testkit::scratch("backlog-config-");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is not a directory"), "{err}");
}

/// `--listen localhost:PORT`, as every example writes it, is resolved and served.
#[test]
fn listen_takes_a_host_name() {
    let port = testkit::free_addr().port();
    let mut served = Served::start(&[
        "--listen",
        &format!("localhost:{port}"),
        "--model",
        "single",
    ]);
    assert_eq!(served.addr.port(), port);
    assert!(served.addr.ip().is_loopback(), "{}", served.addr);
    let resp = testkit::roundtrip(served.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(resp.status, 200);
    served.signal("-TERM");
    assert_eq!(served.wait_exit(), 0);
}
