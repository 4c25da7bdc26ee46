//! Running the `backlog` binary from integration tests: a child whose stderr is collected
//! line by line, its serving address read from the start line, stopped when dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_backlog");

/// The five presets, two threads where they have a count.
pub const PRESETS: [&[&str]; 5] = [
    &["--model", "single"],
    &["--model", "dispatch", "--threads", "2"],
    &["--model", "pool", "--threads", "1", "--workers", "2"],
    &["--model", "shared", "--threads", "2"],
    &["--model", "reuseport", "--threads", "2"],
];

/// The presets and a topology: the shapes a suite runs the real binary in.
pub fn shapes() -> impl Iterator<Item = &'static [&'static str]> {
    PRESETS
        .into_iter()
        .chain([&["--topology", "listeners=1 acceptors=1 readers=2 workers=0"][..]])
}

/// `addr=` in a log line.
pub fn addr_in(line: &str) -> Option<SocketAddr> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .and_then(|a| a.parse().ok())
}

/// A `backlog serve` process.
pub struct Served {
    pub child: Child,
    /// Where it serves (from the "backlog serving" line).
    pub addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    /// Every stderr line read so far.
    pub seen: Vec<String>,
    /// Its data directory (SQLite files of the built-in app), removed after it.
    pub data: testkit::TempDir,
}

impl Served {
    /// `backlog serve ARGS`.
    pub fn start(args: &[&str]) -> Served {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve").args(args);
        Served::spawn(cmd)
    }

    /// Run `cmd` (which ends up exec'ing `backlog serve`) and wait until it serves.
    pub fn spawn(mut cmd: Command) -> Served {
        let data = testkit::scratch("backlog-test-");
        let mut child = cmd
            .env("RUST_LOG", "info")
            .env("BACKLOG_DATA", data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn backlog");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut served = Served {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            lines,
            seen: Vec::new(),
            data,
        };
        let line = served.wait_for("backlog serving");
        served.addr = addr_in(&line).expect("addr in the start line");
        // The layout lines follow the start line.
        std::thread::sleep(Duration::from_millis(100));
        served.drain();
        served
    }

    /// The next line containing `needle` (10 s at most; panics with the log otherwise).
    pub fn wait_for(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no {needle:?} in {:#?}", self.seen));
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// How many lines so far contain `needle`.
    pub fn count(&mut self, needle: &str) -> usize {
        self.drain();
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }

    /// Wait (20 s at most) until `needle` has been logged `n` times.
    pub fn wait_count(&mut self, needle: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.count(needle) < n {
            assert!(
                Instant::now() < deadline,
                "{needle:?} logged fewer than {n} times: {:#?}",
                self.seen
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The admin endpoint's address (from its "admin listening" line).
    pub fn admin_addr(&mut self) -> SocketAddr {
        addr_in(&self.wait_for("admin listening")).expect("admin addr")
    }

    /// Take the lines written so far.
    pub fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// Thread names from /proc/PID/task/*/comm, sorted.
    pub fn thread_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", self.child.id()))
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
            .map(|s| s.trim().to_string())
            .collect();
        names.sort();
        names
    }

    /// Send a signal by name (`-TERM`, `-INT`) to this process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Wait (20 s at most) for the exit code; every line it wrote is then in `seen`.
    pub fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The channel closes at stderr's EOF.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    self.seen.push(line);
                }
                return status.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Everything it logged so far, not only what was read before.
        self.drain();
        let _ = self.child.kill();
        panic!("server did not exit; log: {:#?}", self.seen);
    }

    /// CPU ticks (user + system) the process has used.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill9();
        }
    }
}
