//! `--processes`: a supervisor that holds the sockets, restarts workers and reloads without
//! dropping a connection; systemd socket activation. Against the real binary, with real
//! keep-alive and churning clients counting every failure by kind.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod util;

use util::{Served, BIN};

/// What the clients saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    connect_errors: AtomicU64,
    /// Resets of a connection the server had answered on: it was accepted, and lost.
    resets: AtomicU64,
    /// Resets of a new connection before its first answer: the kernel completed its
    /// handshake, but no worker accepted it (while the listening socket closes at shutdown,
    /// a client whose handshake lands after the last `accept` is reset — a refusal that
    /// shows on the first request rather than at connect).
    fresh_resets: AtomicU64,
    /// A request sent whose answer never came (EOF or another error mid-exchange).
    lost: AtomicU64,
}

impl Tally {
    fn report(&self) -> String {
        format!(
            "ok={} connect_errors={} resets={} fresh_resets={} lost={}",
            self.ok.load(Ordering::Relaxed),
            self.connect_errors.load(Ordering::Relaxed),
            self.resets.load(Ordering::Relaxed),
            self.fresh_resets.load(Ordering::Relaxed),
            self.lost.load(Ordering::Relaxed)
        )
    }
    /// Everything but an answer or a refusal at connect.
    fn failures(&self) -> u64 {
        self.fresh_resets.load(Ordering::Relaxed) + self.lost_after_accept()
    }
    /// What was lost on connections a worker had accepted (answered on).
    fn lost_after_accept(&self) -> u64 {
        self.resets.load(Ordering::Relaxed) + self.lost.load(Ordering::Relaxed)
    }
}

enum Outcome {
    /// Answered; `true` if the server asked to close.
    Answered(bool),
    Reset,
    Lost,
}

fn exchange(r: &mut BufReader<TcpStream>, request: &[u8]) -> Outcome {
    let classify = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => Outcome::Reset,
        _ => Outcome::Lost,
    };
    if let Err(e) = r.get_mut().write_all(request) {
        return classify(e);
    }
    match testkit::read_response(r, false) {
        Ok(resp) if resp.status == 200 => {
            Outcome::Answered(resp.header("connection") == Some("close"))
        }
        Ok(_) => Outcome::Lost,
        Err(e) => classify(e),
    }
}

/// A keep-alive client (or, with `churn`, a connection per request) until `stop`.
fn client(addr: SocketAddr, churn: bool, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let request: &[u8] = if churn {
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    } else {
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
    };
    // Bounded: the test stops it, and it stops itself after 60 s regardless.
    let give_up = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) && Instant::now() < give_up {
        let stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => s,
            Err(_) => {
                tally.connect_errors.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.set_nodelay(true);
        let mut r = BufReader::new(stream);
        let mut answered = false;
        while !stop.load(Ordering::Relaxed) {
            match exchange(&mut r, request) {
                Outcome::Answered(close) => {
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                    answered = true;
                    if close || churn {
                        break;
                    }
                }
                Outcome::Reset if !answered => {
                    tally.fresh_resets.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Outcome::Reset => {
                    tally.resets.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Outcome::Lost => {
                    tally.lost.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, keepalive: usize, churn: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let threads = (0..keepalive + churn)
            .map(|i| {
                let (stop, tally) = (stop.clone(), tally.clone());
                std::thread::spawn(move || client(addr, i >= keepalive, stop, tally))
            })
            .collect();
        Load {
            stop,
            tally,
            threads,
        }
    }

    /// Wait until the load has had `more` answers since it was last asked (the load is
    /// running through whatever happens next, not only starting).
    fn wait_answers(&self, more: u64) {
        let from = self.tally.ok.load(Ordering::Relaxed);
        testkit::wait_until("answers under load", Duration::from_secs(10), || {
            self.tally.ok.load(Ordering::Relaxed) >= from + more
        });
    }

    fn finish(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        self.tally
    }
}

fn pids_in(served: &mut Served, needle: &str) -> Vec<u32> {
    served.drain();
    served
        .seen
        .iter()
        .filter(|l| l.contains(needle))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("pid="))
                .and_then(|p| p.parse().ok())
        })
        .collect()
}

/// Two worker processes of `shape`: a model name (with two threads) or a `--topology`.
fn supervisor(shape: &str, extra: &[&str]) -> Served {
    let mut args = vec!["--listen", "127.0.0.1:0"];
    if shape.contains('=') {
        args.extend(["--topology", shape]);
    } else {
        args.extend(["--model", shape, "--threads", "2"]);
    }
    args.extend(["--processes", "2", "--drain-timeout", "5s"]);
    args.extend_from_slice(extra);
    let mut s = Served::start(&args);
    s.wait_count("worker serving", 2);
    s
}

fn get(addr: SocketAddr) -> bool {
    let Ok(s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    matches!(
        exchange(
            &mut BufReader::new(s),
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        ),
        Outcome::Answered(_)
    )
}

#[test]
fn reloads_under_load_lose_nothing_and_old_workers_exit_zero() {
    for model in [
        "reuseport",
        "shared",
        "single",
        "dispatch",
        "listeners=2 acceptors=2 readers=2 workers=2",
    ] {
        let dir = testkit::scratch("backlog-test-");
        let pid_file = dir.path().join("reload.pid");
        let mut s = supervisor(model, &["--pid-file", pid_file.to_str().unwrap()]);
        let load = Load::start(s.addr, 4, 2);
        load.wait_answers(100);
        const RELOADS: usize = 3;
        for i in 1..=RELOADS {
            let out = Command::new(BIN)
                .args(["reload", "--pid-file", pid_file.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            s.wait_count("old generation draining", i);
            // Every old worker drains and exits 0 before the next reload.
            s.wait_count("worker drained and exited", 2 * i);
            // The new generation serves before the next reload.
            load.wait_answers(100);
        }
        let tally = load.finish();
        eprintln!("{model}: {} reloads: {}", RELOADS, tally.report());
        assert!(tally.ok.load(Ordering::Relaxed) > 100, "{}", tally.report());
        assert_eq!(
            tally.connect_errors.load(Ordering::Relaxed),
            0,
            "{model}: {}",
            tally.report()
        );
        assert_eq!(tally.failures(), 0, "{model}: {}", tally.report());
        assert_eq!(s.count("worker exited:"), 0, "{:#?}", s.seen);
        s.signal("-TERM");
        assert_eq!(s.wait_exit(), 0);
    }
}

#[test]
fn a_killed_worker_is_restarted_and_the_socket_never_refuses() {
    let mut s = supervisor("reuseport", &[]);
    let load = Load::start(s.addr, 4, 2);
    load.wait_answers(100);
    let victim = pids_in(&mut s, "worker serving")[0];
    let ok = Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    s.wait_count("killed by signal 9", 1);
    s.wait_count("worker serving", 3);
    load.wait_answers(100);
    let tally = load.finish();
    eprintln!("kill -9 one of two workers: {}", tally.report());
    assert_eq!(
        tally.connect_errors.load(Ordering::Relaxed),
        0,
        "{}",
        tally.report()
    );
    // At most the exchanges in flight on the dead worker's connections: one per client.
    assert!(tally.failures() <= 6, "{}", tally.report());
    assert!(get(s.addr));
    s.signal("-TERM");
    assert_eq!(s.wait_exit(), 0);
}

#[test]
fn sigterm_to_the_supervisor_drains_every_worker_and_exits_zero() {
    let mut s = supervisor("shared", &["--admin", "127.0.0.1:0"]);
    let admin = s.admin_addr();
    // The admin endpoint shows every process and every thread, named by process.
    let state = admin::fetch_state(admin, Duration::from_secs(1)).unwrap();
    assert_eq!(state.processes.len(), 2, "{state:?}");
    assert!(state.processes.iter().all(|p| p.ready && p.generation == 1));
    assert!(
        state
            .threads
            .iter()
            .any(|t| t.counters.name.starts_with("w1.g1/")),
        "{:?}",
        state.threads
    );
    assert!(get(s.addr));
    // Every line a worker logs says which worker speaks, in the admin view's names; the
    // supervisor's own lines carry no prefix and name its address plainly.
    s.drain();
    for worker in ["[w0.g1] ", "[w1.g1] "] {
        assert!(
            s.seen
                .iter()
                .any(|l| l.starts_with(worker) && l.contains("backlog serving")),
            "{:#?}",
            s.seen
        );
    }
    let bound = s.wait_for("sockets bound");
    assert!(!bound.starts_with('['), "{bound}");
    assert!(bound.contains(&format!("addr={}", s.addr)), "{bound}");
    // The supervisor lists its workers' connections, named as in its merged state.
    let (mut held, mut held_r) = testkit::open(s.addr);
    held.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(
        testkit::read_response(&mut held_r, false).unwrap().status,
        200
    );
    let listing = testkit::request(admin, "GET", "/debug/connections?limit=10", &[], b"");
    assert_eq!(listing.status, 200, "{}", listing.text());
    let body: serde_json::Value = serde_json::from_str(&listing.text()).unwrap();
    assert!(body["total"].as_u64().unwrap() >= 1, "{body}");
    assert!(
        body["connections"][0]["thread"]
            .as_str()
            .unwrap()
            .starts_with('w'),
        "{body}"
    );
    drop((held, held_r));
    let load = Load::start(s.addr, 2, 0);
    load.wait_answers(50);
    s.signal("-TERM");
    assert_eq!(s.wait_exit(), 0);
    let tally = load.finish();
    assert_eq!(s.count("worker drained and exited"), 2, "{:#?}", s.seen);
    // Nothing a worker accepted is lost. A client reconnecting as the socket closes is
    // refused — at connect, or, when its handshake completed after the last accept, by a
    // reset before any answer — as it would be by any server that stops listening.
    assert_eq!(tally.lost_after_accept(), 0, "{}", tally.report());
    assert!(TcpStream::connect(s.addr).is_err(), "still accepting");
}

#[test]
fn socket_activation_serves_on_the_passed_socket() {
    for processes in ["1", "2"] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let fd = sys::fd::number(&listener);
        sys::fd::set_inherited(listener.as_fd(), true).unwrap();
        // What systemd does: the socket at descriptor 3, LISTEN_FDS, and LISTEN_PID naming
        // the process that execs (the shell's pid becomes backlog's).
        let moves = if fd == 3 {
            String::new()
        } else {
            format!("exec 3<&{fd} {fd}<&-;")
        };
        // bash: dash refuses descriptor numbers above 9.
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(format!(
            "{moves} LISTEN_FDS=1 LISTEN_PID=$$ exec {BIN} serve --listen 127.0.0.1:1 --model single --processes {processes}"
        ));
        let mut s = Served::spawn(cmd);
        sys::fd::set_inherited(listener.as_fd(), false).unwrap();
        assert_eq!(s.addr, addr, "serves on the passed socket, not --listen");
        assert!(s
            .wait_for("serving on inherited sockets")
            .contains("Systemd"));
        drop(listener);
        assert!(get(addr), "{processes} process(es)");
        s.signal("-TERM");
        assert_eq!(s.wait_exit(), 0);
    }
}

#[test]
fn workers_that_cannot_start_make_the_supervisor_give_up() {
    // A store nobody listens on: every worker exits at start.
    let data = testkit::scratch("backlog-test-");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--processes", "2"])
        .args(["--store", "postgres://nobody@127.0.0.1:1/none"])
        .env("BACKLOG_DATA", data.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("workers exit before serving"), "{stderr}");
}

#[test]
fn a_public_admin_address_is_refused_before_anything_is_bound() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = testkit::scratch("backlog-test-");
    let admin = format!("0.0.0.0:{port}");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--processes", "2"])
        .args(["--admin", &admin])
        .env("BACKLOG_DATA", data.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--admin-public"), "{stderr}");
}

/// `--processes 2 --model dispatch` with the supervisor passing connections to workers that
/// may hold 256 descriptors each: 1,000 clients at once, each holding its connection for a
/// second after its answer. Every one is answered: a worker's ceiling leaves room for its
/// own descriptors, so the kernel never has to discard a passed one (MSG_CTRUNC, which lost
/// 540 of 1,000 before), and the rest wait in the kernel's queue as in one process.
#[test]
fn passed_connections_are_never_lost_under_a_low_descriptor_limit() {
    const CLIENTS: usize = 1_000;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -n 256 && exec {BIN} serve --listen 127.0.0.1:0 --model dispatch --threads 2 --processes 2"
        ));
    let mut s = Served::spawn(cmd);
    s.wait_count("worker serving", 2);
    let addr = s.addr;
    let answered = AtomicU64::new(0);
    let failed = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn_scoped(scope, || {
                    let outcome = (|| -> std::io::Result<()> {
                        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
                        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
                        let mut r = BufReader::new(stream);
                        r.get_mut()
                            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")?;
                        let resp = testkit::read_response(&mut r, false)?;
                        if resp.status != 200 {
                            return Err(std::io::Error::other(format!("status {}", resp.status)));
                        }
                        answered.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_secs(1));
                        Ok(())
                    })();
                    if let Err(err) = outcome {
                        failed.lock().unwrap().push(err.to_string());
                    }
                })
                .unwrap();
        }
    });
    let failed = failed.into_inner().unwrap();
    assert_eq!(
        answered.load(Ordering::Relaxed) as usize,
        CLIENTS,
        "{} failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    assert_eq!(s.count("discarded a passed descriptor"), 0, "{:#?}", s.seen);
    s.signal("-TERM");
    assert_eq!(s.wait_exit(), 0);
}

/// The same shape behaves the same whatever it is called: `--model dispatch` and the topology
/// it is a preset of both have the supervisor accept and pass connections to the workers.
#[test]
fn dispatch_by_name_or_by_topology_runs_the_same_across_processes() {
    for shape in ["dispatch", "listeners=1 acceptors=1 readers=2"] {
        let mut s = supervisor(shape, &[]);
        assert!(
            s.thread_names().iter().any(|t| t == "dispatcher"),
            "{shape}: the supervisor accepts: {:?}",
            s.thread_names()
        );
        assert!(get(s.addr), "{shape}");
        s.signal("-TERM");
        assert_eq!(s.wait_exit(), 0);
    }
}
