//! Syscalls per request, counted by `strace -c -f` attached to the server's processes during
//! a separate short run (strace slows the server down, so this run's other figures are not
//! used). Skipped, with a note, when strace is not installed.

use crate::loadgen::{self, LoadSpec, Pace, Reuse};
use crate::target::Running;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Whether strace can be run.
pub fn available() -> bool {
    Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Count the server's syscalls while `connections` keep-alive clients send requests
/// `pipeline` deep for `duration`; returns syscalls per answered request.
pub fn per_request(
    server: &Running,
    connections: usize,
    pipeline: usize,
    duration: Duration,
    stop: &AtomicBool,
) -> Option<f64> {
    let out = std::env::temp_dir().join(format!(
        "backlog-strace-{}-{}",
        std::process::id(),
        server.pid()
    ));
    let mut cmd = Command::new("strace");
    cmd.args(["-c", "-f", "-o"]).arg(&out);
    // Every thread of every process: attaching to a pid attaches to that thread only.
    for pid in server.pids() {
        let tids: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        for tid in tids {
            cmd.args(["-p", &tid]);
        }
    }
    let mut strace = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(500)); // attach
    let spec = LoadSpec {
        addr: server.addr,
        connections,
        threads: 1,
        duration,
        warmup: Duration::ZERO,
        pace: Pace::Closed,
        reuse: Reuse::KeepAlive,
        pipeline,
        requests: vec![(1, b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n".to_vec())],
        timeout: Duration::from_secs(10),
        cpus: Vec::new(),
        tls: None,
        nice: 0,
    };
    let result = loadgen::run(&spec, stop);
    let _ = Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status();
    let _ = strace.wait();
    let text = std::fs::read_to_string(&out).ok()?;
    let _ = std::fs::remove_file(&out);
    // The summary's last line: "100.00    0.123456       1   123456     12 total"
    let total = text
        .lines()
        .rev()
        .find(|l| l.trim_end().ends_with("total"))?;
    // % time, seconds, usecs/call, calls, [errors,] "total"
    let fields: Vec<&str> = total.split_whitespace().collect();
    let calls: f64 = fields.get(3)?.parse().ok()?;
    (result.requests > 0).then(|| calls / result.requests as f64)
}
