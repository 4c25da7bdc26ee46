//! What the lab measures, and the loop that measures it.
//!
//! Each scenario runs against every target, each server started as its own process on a
//! fresh port, with a warm-up before measuring; each figure is the median of the repeats,
//! with the spread kept. Server CPU per request (user + system time of the server's
//! processes over the measured window, from /proc) is the figure that decides: on two
//! cores the client is often the limit on requests/s, and the report says when it was.

use crate::loadgen::{self, LoadSpec, Pace, Reuse};
use crate::netns::{self, Hosts};
use crate::target::{self, Running, Target};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scenario {
    /// Short name (file names, tables).
    pub name: String,
    /// What it shows.
    pub about: String,
    /// Connections of the measured clients.
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Connection per request?
    pub churn: bool,
    /// Paths with weights.
    pub mix: Vec<(u32, String)>,
    /// Only backlog can serve it (`/work`).
    pub backlog_only: bool,
    /// Extra connections trickling a header byte every 0.5 s while measuring.
    pub slowloris: usize,
    /// The servers' listen backlog for this scenario.
    #[serde(default)]
    pub backlog: Option<u32>,
    /// Run server and clients inside a network namespace the lab creates (root only).
    #[serde(default)]
    pub netns: bool,
    /// Load-generator threads for this scenario (default: the plan's).
    #[serde(default)]
    pub client_threads: Option<usize>,
    /// Extra connections that pipeline requests and never read the answers, while measuring.
    #[serde(default)]
    pub slow_readers: usize,
    /// Fixed total rate in requests/s (latency from each request's intended send time);
    /// none: closed loop.
    #[serde(default)]
    pub rate: Option<f64>,
    /// A SYN flood from a second host while measuring (implies a pair of namespaces).
    #[serde(default)]
    pub flood: Option<Flood>,
    /// Bursts of this many connects at once, every 500 ms, beside the measured clients.
    #[serde(default)]
    pub burst: usize,
    /// Reload the server (SIGHUP: a new generation of workers) this often while measuring;
    /// only servers that reload in place take part (backlog `--processes`, nginx).
    #[serde(default)]
    pub reload_every: Option<Duration>,
}

/// Handshakes that are never completed, sent from an address whose SYN-ACKs go nowhere.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Flood {
    /// New half-open connections per second.
    pub syns_per_second: u32,
    /// The server host's `net.ipv4.tcp_syncookies`.
    pub syncookies: u8,
    /// The server host's `net.ipv4.tcp_max_syn_backlog`.
    pub max_syn_backlog: u32,
}

impl Scenario {
    /// Whether target `t` runs in this scenario: a target limited to some scenarios runs in
    /// those; `/work` needs backlog; reloads need a server that reloads in place.
    pub fn includes(&self, t: &Target) -> bool {
        if !t.only.is_empty() && !t.only.contains(&self.name) {
            return false;
        }
        if self.backlog_only && !t.is_backlog() {
            return false;
        }
        if self.reload_every.is_some() {
            return matches!(t.kind, target::Kind::Nginx { .. }) || t.processes() > 1;
        }
        true
    }

    fn new(name: &str, about: &str, connections: usize) -> Scenario {
        Scenario {
            name: name.into(),
            about: about.into(),
            connections,
            pipeline: 1,
            churn: false,
            mix: vec![(1, "/".into())],
            backlog_only: false,
            slowloris: 0,
            backlog: None,
            netns: false,
            client_threads: None,
            slow_readers: 0,
            rate: None,
            flood: None,
            burst: 0,
            reload_every: None,
        }
    }
}

/// The workloads extra shapes run in: steady, churning, and mixed fast and slow handlers.
pub const SHAPE_SCENARIOS: [&str; 3] = ["keepalive-64", "churn", "mixed"];
/// The workloads of the thread sweep.
pub const SWEEP_SCENARIOS: [&str; 2] = ["keepalive-64", "mixed"];
/// Reader counts of the thread sweep: up to well past this machine's cores.
pub const SWEEP_READERS: [usize; 5] = [1, 2, 4, 8, 16];

/// The thread sweep ("how many is too many"): readers 1…16 for reuseport, dispatch and a
/// hybrid with two acceptors and a two-worker pool, named `sweep/<shape>/<readers>`.
fn sweep_targets() -> Vec<Target> {
    let mut out = Vec::new();
    for n in SWEEP_READERS {
        for (kind, shape) in [
            ("reuseport", format!("listeners={n} readers={n}")),
            ("dispatch", format!("acceptors=1 readers={n}")),
            (
                "hybrid",
                format!("listeners=1 acceptors=2 readers={n} workers=2"),
            ),
        ] {
            out.push(
                Target::backlog(&format!("sweep/{kind}/{n}"), &shape, &[]).only(&SWEEP_SCENARIOS),
            );
        }
    }
    out
}

/// The whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// Scenarios in order.
    pub scenarios: Vec<Scenario>,
    /// Targets in order.
    pub targets: Vec<Target>,
    /// Server threads (and nginx workers).
    pub threads: usize,
    /// Load-generator threads.
    pub client_threads: usize,
    /// Measured seconds per run.
    pub duration: Duration,
    /// Warm-up per run.
    pub warmup: Duration,
    /// Runs per figure (the median is reported).
    pub repeats: usize,
    /// Idle keep-alive connections for the memory figure.
    pub idle_connections: usize,
    /// Count syscalls per request with strace.
    pub syscalls: bool,
}

impl Plan {
    /// `--quick` (under 3 minutes, for CI) or the full run.
    pub fn new(quick: bool, threads: usize) -> Plan {
        let mut keepalive = Scenario::new("keepalive-64", "keep-alive GET /, 64 connections", 64);
        keepalive.about = "keep-alive plaintext GET /, 64 connections".into();
        let big = Scenario::new(
            "keepalive-1024",
            "keep-alive GET /, 1,024 connections",
            1024,
        );
        let mut churn = Scenario::new("churn", "a new connection per request, 64 at a time", 64);
        churn.churn = true;
        let mut pipelined = Scenario::new(
            "pipelined-16",
            "keep-alive, 16 requests pipelined, 64 connections",
            64,
        );
        pipelined.pipeline = 16;
        let mut mixed = Scenario::new(
            "mixed",
            "95% GET /, 5% GET /work?spin_us=2000: imbalance and head-of-line blocking",
            64,
        );
        mixed.mix = vec![(95, "/".into()), (5, "/work?spin_us=2000".into())];
        mixed.backlog_only = true;
        let mut slowloris = Scenario::new("slowloris", "64 normal keep-alive clients while 1,000 connections trickle a header byte every 0.5 s", 64);
        slowloris.slowloris = 1000;
        let mut storm = Scenario::new(
            "accept-storm",
            "64 churning clients (a connection per request) while bursts of 3,000 connects arrive every 500 ms, against --backlog 64, in a network namespace the lab creates",
            64,
        );
        storm.churn = true;
        storm.backlog = Some(64);
        storm.netns = true;
        storm.burst = 3000;
        let mut reload = Scenario::new(
            "reload",
            "churn (a connection per request, 64 at a time) while the server reloads every 500 ms: a new generation of workers, the old one drained; backlog with --processes 2 and nginx only",
            64,
        );
        reload.churn = true;
        reload.reload_every = Some(Duration::from_millis(500));
        let mut fixed = Scenario::new(
            "fixed-rate",
            "keep-alive GET /, 64 connections at a fixed 20,000 requests/s: latency from each request's intended send time (no coordinated omission)",
            64,
        );
        fixed.rate = Some(20_000.0);
        let mut slow_readers = Scenario::new(
            "slow-readers",
            "64 normal keep-alive clients while 200 connections pipeline thousands of requests and never read an answer",
            64,
        );
        slow_readers.slow_readers = 200;
        let flood = |cookies: u8| {
            let mut f = Scenario::new(
                &format!("syn-flood-cookies-{cookies}"),
                &format!(
                    "16 churning clients from a second host while another floods 2,000 never-ACKed SYNs/s; \
                     tcp_syncookies={cookies}, --backlog 128 (tcp_max_syn_backlog=1024, so the listener's own queue is what fills); two network namespaces the lab creates"
                ),
                16,
            );
            f.churn = true;
            f.backlog = Some(128);
            f.flood = Some(Flood {
                syns_per_second: 2000,
                syncookies: cookies,
                max_syn_backlog: 1024,
            });
            f
        };

        let mut targets = vec![
            Target::backlog("single", "single", &[]),
            Target::backlog("dispatch", "dispatch", &[]),
            Target::backlog("pool", "pool", &[]),
            Target::backlog("shared", "shared", &[]),
            Target::backlog("reuseport", "reuseport", &[]),
            Target::backlog("reuseport ×2 proc", "reuseport", &["--processes", "2"]),
        ];
        if !quick {
            targets.extend([
                Target::backlog("dispatch ×2 proc", "dispatch", &["--processes", "2"]),
                Target::backlog(
                    "dispatch/least-conns",
                    "dispatch",
                    &["--balance", "least-conns"],
                ),
                Target::backlog("dispatch/p2c", "dispatch", &["--balance", "p2c"]),
                Target::backlog("shared/mutex", "shared", &["--accept", "mutex"]),
                Target::backlog("shared/herd", "shared", &["--accept", "herd"]),
            ]);
        }
        // Shapes no preset has, on the workloads that tell shapes apart.
        let shapes = |t: Target| t.only(&SHAPE_SCENARIOS);
        targets.push(shapes(Target::backlog(
            "hybrid 1×2×2×2",
            "listeners=1 acceptors=2 readers=2 workers=2",
            &[],
        )));
        if !quick {
            targets.extend([
                shapes(Target::backlog(
                    "hybrid 1×3×5×8",
                    "listeners=1 acceptors=3 readers=5 workers=8",
                    &[],
                )),
                shapes(Target::backlog(
                    "reuseport readers + pool",
                    &format!("listeners={threads} readers={threads} workers={threads}"),
                    &[],
                )),
            ]);
            targets.extend(sweep_targets());
        }
        targets.push(Target::anchor(
            &format!("nginx ({threads} workers)"),
            target::Kind::Nginx { workers: threads },
        ));
        if cfg!(feature = "hyper") {
            targets.push(Target::anchor(
                &format!("hyper ({threads} threads)"),
                target::Kind::Hyper,
            ));
        }
        targets.push(Target::anchor(
            "node",
            target::Kind::Node { cluster: false },
        ));
        if !quick {
            targets.push(Target::anchor(
                &format!("node cluster ({threads})"),
                target::Kind::Node { cluster: true },
            ));
        }
        let scenarios = if quick {
            vec![keepalive, churn, pipelined, mixed, reload]
        } else {
            vec![
                keepalive,
                big,
                churn,
                pipelined,
                mixed,
                fixed,
                slowloris,
                slow_readers,
                reload,
                storm,
                flood(0),
                flood(1),
            ]
        };
        Plan {
            scenarios,
            targets,
            threads,
            client_threads: 1,
            duration: if quick {
                Duration::from_millis(1500)
            } else {
                Duration::from_secs(5)
            },
            warmup: if quick {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(1)
            },
            repeats: if quick { 1 } else { 3 },
            idle_connections: if quick { 1000 } else { 10_000 },
            syscalls: !quick,
        }
    }

    /// Number of runs, for the progress bar.
    pub fn runs(&self) -> usize {
        self.scenarios
            .iter()
            .map(|s| self.targets.iter().filter(|t| s.includes(t)).count())
            .sum::<usize>()
            * self.repeats
    }

    /// A bound on how long it takes.
    pub fn expected(&self) -> Duration {
        let per_run = self.duration + self.warmup + Duration::from_millis(900);
        per_run * self.runs() as u32 + Duration::from_secs(4) * self.targets.len() as u32
    }
}

/// One scenario against one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    /// Scenario name.
    pub scenario: String,
    /// Target name.
    pub target: String,
    /// Requests per second (median of the runs).
    pub rps: f64,
    /// Requests per second of every run.
    pub rps_runs: Vec<f64>,
    /// Latency percentiles of the median run, µs.
    pub p50_us: u64,
    /// 90th percentile, µs.
    pub p90_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Slowest, µs.
    pub max_us: u64,
    /// The latency distribution, as (percentile, µs) points.
    pub cdf: Vec<(f64, u64)>,
    /// Errors by kind (summed over runs).
    pub errors: BTreeMap<String, u64>,
    /// Server CPU per request, µs (median run).
    pub server_cpu_us: f64,
    /// Of which in the kernel (system time), µs per request.
    #[serde(default)]
    pub server_sys_us: f64,
    /// Load-generator CPU per request, µs (median run).
    pub client_cpu_us: f64,
    /// The client used ≥ 90% of its core(s): requests/s then measure the client.
    pub client_limited: bool,
    /// Server RSS at the end, KiB.
    pub rss_kib: u64,
    /// Peak accept-queue length over all listeners on the port, median run.
    pub accept_queue_peak: Option<u32>,
    /// ListenOverflows during the run (the host's, or the lab namespace's).
    pub listen_overflows: u64,
    /// Peak SYN_RECV count on the server's port (sock_diag), median run.
    #[serde(default)]
    pub syn_recv_peak: u32,
    /// TcpExt counters that moved during the median run (overflows, drops, cookies).
    #[serde(default)]
    pub tcp_ext: BTreeMap<String, u64>,
    /// The median run's kernel queues over time: (seconds, accept queue over all
    /// listeners, SYN_RECV), sampled every 100 ms.
    #[serde(default)]
    pub queues: Vec<(f64, u32, u32)>,
    /// Requests per handling thread (backlog only), for the balance plot.
    pub per_thread: Vec<(String, u64)>,
    /// Voluntary context switches of the server's threads per request (median run).
    #[serde(default)]
    pub voluntary_switches: f64,
    /// Involuntary context switches per request: threads preempted, e.g. more than cores.
    #[serde(default)]
    pub involuntary_switches: f64,
}

/// Memory per idle keep-alive connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleMemory {
    /// Target name.
    pub target: String,
    /// Connections held.
    pub connections: usize,
    /// RSS growth per connection, bytes.
    pub bytes_per_connection: f64,
}

/// Syscalls per request for one target and load shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyscallCount {
    /// Target name.
    pub target: String,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Syscalls (all of the server's threads and processes) per answered request.
    pub per_request: f64,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// The plan that ran.
    pub plan: Plan,
    /// Measurements, in run order.
    pub measurements: Vec<Measurement>,
    /// Idle-connection memory per target.
    pub idle: Vec<IdleMemory>,
    /// Syscalls per request (when strace is installed).
    pub syscalls: Vec<SyscallCount>,
    /// Whether Ctrl-C cut the run short.
    pub interrupted: bool,
    /// Wall time of the run, seconds.
    pub wall_s: f64,
    /// Notes for the report (skipped targets, …).
    pub notes: Vec<String>,
}

fn request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: lab\r\n\r\n").into_bytes()
}

struct Run {
    result: loadgen::LoadResult,
    /// Context switches during the measured window (voluntary, involuntary).
    switches: (u64, u64),
    server_cpu: f64,
    server_sys: f64,
    client_cpu: f64,
    rss: u64,
    tcp_ext: kernel::TcpExt,
    queues: Vec<(f64, u32, u32)>,
    per_thread: Vec<(String, u64)>,
}

/// What the kernel shows about the server's port while a run measures, read from the
/// server's own network namespace: queues every 100 ms, TcpExt counters before and after.
struct Watch {
    queues: Vec<(f64, u32, u32)>,
    tcp_ext: kernel::TcpExt,
}

fn watch(server_ns: Option<&str>, port: u16, warmup: Duration, measuring: &AtomicBool) -> Watch {
    if let Some(ns) = server_ns {
        if sys::netns::enter(ns).is_err() {
            return Watch {
                queues: Vec::new(),
                tcp_ext: kernel::TcpExt::default(),
            };
        }
    }
    std::thread::sleep(warmup);
    let before = kernel::TcpExt::read().unwrap_or_default();
    let start = Instant::now();
    let mut queues = Vec::new();
    while measuring.load(Ordering::Relaxed) {
        let accept = kernel::listen_queues(port).map_or(0, |q| q.queued);
        let syn = kernel::syn_recv_count(port).unwrap_or(0);
        queues.push((start.elapsed().as_secs_f64(), accept, syn));
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = kernel::TcpExt::read().unwrap_or_default();
    Watch {
        queues,
        tcp_ext: after.since(&before),
    }
}

fn one_run(
    plan: &Plan,
    s: &Scenario,
    server: &Running,
    server_ns: Option<&str>,
    stop: &AtomicBool,
) -> Run {
    // A storm is measured from its first burst: that is when the queue overflows.
    let warmup = if s.backlog.is_some() && s.flood.is_none() {
        Duration::ZERO
    } else {
        plan.warmup
    };
    let spec = LoadSpec {
        addr: server.addr,
        connections: s.connections,
        threads: s.client_threads.unwrap_or(plan.client_threads),
        duration: plan.duration,
        warmup,
        pace: s.rate.map_or(Pace::Closed, Pace::Rate),
        reuse: if s.churn {
            Reuse::Churn
        } else {
            Reuse::KeepAlive
        },
        pipeline: s.pipeline,
        requests: s.mix.iter().map(|(w, p)| (*w, request(p))).collect(),
        timeout: Duration::from_secs(5),
    };
    let measuring = AtomicBool::new(true);
    let before_state = server_admin_state(server, server_ns);
    let mut cpu = ((0.0, 0.0), 0.0);
    let mut switches_before = (0, 0);
    let mut watched = None;
    let result = std::thread::scope(|scope| {
        // CPU from the end of the warm-up.
        let baseline = scope.spawn(|| {
            std::thread::sleep(warmup);
            let switches = server.context_switches();
            ((server.cpu_split(), target::own_cpu_seconds()), switches)
        });
        let kernel = scope.spawn(|| watch(server_ns, server.addr.port(), warmup, &measuring));
        // The queues are read by `watch` for every target alike; polling backlog's admin
        // endpoint as well would charge backlog alone for the samples (each a sock_diag
        // dump and a JSON encode on the server's cores).
        if s.slowloris > 0 {
            let (addr, n, until) = (
                server.addr,
                s.slowloris,
                Instant::now() + warmup + plan.duration,
            );
            scope.spawn(move || trickle(addr, n, until));
        }
        let until = Instant::now() + warmup + plan.duration;
        if s.slow_readers > 0 {
            let (addr, n) = (server.addr, s.slow_readers);
            scope.spawn(move || never_read(addr, n, until));
        }
        if let Some(every) = s.reload_every {
            let pid = server.pid();
            scope.spawn(move || {
                let mut next = Instant::now() + warmup + every / 2;
                while next < until {
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    let _ = sys::process::signal(pid, 1 /* SIGHUP */);
                    next += every;
                }
            });
        }
        if s.burst > 0 {
            let (addr, n) = (server.addr, s.burst);
            scope.spawn(move || bursts(addr, n, until));
        }
        if let Some(flood) = s.flood {
            let addr = server.addr;
            scope.spawn(move || syn_flood(addr, flood.syns_per_second, until));
        }
        let r = loadgen::run(&spec, stop);
        measuring.store(false, Ordering::Relaxed);
        (cpu, switches_before) = baseline.join().unwrap_or((((0.0, 0.0), 0.0), (0, 0)));
        watched = kernel.join().ok();
        r
    });
    let (user, sys) = server.cpu_split();
    let switches_after = server.context_switches();
    let after_state = server_admin_state(server, server_ns);
    let per_thread = match (before_state, after_state) {
        (Some(b), Some(a)) => a
            .threads
            .iter()
            .filter(|t| {
                a.layout
                    .iter()
                    .any(|l| l.name == t.counters.name && l.handles)
            })
            .map(|t| {
                let before = b
                    .threads
                    .iter()
                    .find(|o| o.counters.name == t.counters.name);
                (
                    t.counters.name.clone(),
                    t.counters.requests - before.map_or(0, |o| o.counters.requests),
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    Run {
        server_cpu: (user + sys) - (cpu.0 .0 + cpu.0 .1),
        server_sys: sys - cpu.0 .1,
        client_cpu: target::own_cpu_seconds() - cpu.1,
        rss: server.rss_kib(),
        tcp_ext: watched
            .as_ref()
            .map(|w| w.tcp_ext.clone())
            .unwrap_or_default(),
        queues: watched.map(|w| w.queues).unwrap_or_default(),
        per_thread,
        switches: (
            switches_after.0.saturating_sub(switches_before.0),
            switches_after.1.saturating_sub(switches_before.1),
        ),
        result,
    }
}

/// The server's `/debug/state`, fetched from inside its namespace when it has one.
fn server_admin_state(server: &Running, server_ns: Option<&str>) -> Option<admin::State> {
    let admin = server.admin?;
    match server_ns {
        None => target::admin_state(admin),
        Some(ns) => std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    sys::netns::enter(ns).ok()?;
                    target::admin_state(admin)
                })
                .join()
                .ok()
                .flatten()
        }),
    }
}

/// Connections that pipeline thousands of requests, never read an answer, and keep
/// offering more as the server takes them: answers pile up in the server's output until
/// it stops reading them (or cuts them at its write timeout).
fn never_read(addr: std::net::SocketAddr, n: usize, until: Instant) {
    let batch: Vec<u8> = request("/").repeat(2_000);
    let mut conns: Vec<(TcpStream, usize)> = (0..n)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .filter(|c| c.set_nonblocking(true).is_ok())
        .map(|c| (c, 0))
        .collect();
    while Instant::now() < until && !conns.is_empty() {
        conns.retain_mut(|(c, at)| loop {
            match c.write(&batch[*at..]) {
                Ok(0) => return false,
                Ok(k) => *at = (*at + k) % batch.len(),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        });
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every 500 ms, `n` connects as fast as one thread can make them, each sending a request
/// once connected and closed a second later: arrivals faster than any acceptor drains them.
fn bursts(addr: std::net::SocketAddr, n: usize, until: Instant) {
    use socket2::{Domain, SockAddr, Socket, Type};
    let to = SockAddr::from(addr);
    let head = request("/");
    let domain = Domain::for_address(addr);
    let mut held: std::collections::VecDeque<(Instant, Vec<Socket>)> = Default::default();
    while Instant::now() < until {
        let next = Instant::now() + Duration::from_millis(500);
        let mut burst = Vec::with_capacity(n);
        for _ in 0..n {
            let Ok(sock) = Socket::new(domain, Type::STREAM.nonblocking(), None) else {
                break;
            };
            let _ = sock.connect(&to);
            burst.push(sock);
        }
        for sock in &burst {
            let _ = sock.send(&head);
        }
        held.push_back((Instant::now(), burst));
        while held
            .front()
            .is_some_and(|(at, _)| at.elapsed() > Duration::from_secs(1))
        {
            held.pop_front();
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// Half-open connections at `per_second` from the flooding address; each socket is
/// dropped after a second (a SYN_SENT socket leaves without a packet) so the client's own
/// SYN retransmits stay few.
fn syn_flood(addr: std::net::SocketAddr, per_second: u32, until: Instant) {
    let tick = Duration::from_millis(10);
    let per_tick = (per_second as usize / 100).max(1);
    let mut open: std::collections::VecDeque<(Instant, Vec<socket2::Socket>)> = Default::default();
    while Instant::now() < until {
        open.push_back((Instant::now(), netns::half_open(addr, per_tick)));
        while open
            .front()
            .is_some_and(|(at, _)| at.elapsed() > Duration::from_secs(1))
        {
            open.pop_front();
        }
        std::thread::sleep(tick);
    }
}

/// Connections that send a request head one byte every 0.5 s and never finish it.
fn trickle(addr: std::net::SocketAddr, n: usize, until: Instant) {
    let mut conns: Vec<TcpStream> = (0..n)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    let head = b"GET / HTTP/1.1\r\nHost: lab\r\nX-Slow: ";
    let mut i = 0;
    while Instant::now() < until {
        let b = head.get(i).copied().unwrap_or(b'a');
        conns.retain_mut(|c| c.write_all(&[b]).is_ok());
        i += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Hold `n` idle keep-alive connections (each answered once) and measure RSS growth.
fn idle_memory(server: &Running, n: usize) -> f64 {
    use std::io::Read;
    let before = server.rss_kib();
    let mut conns = Vec::new();
    for _ in 0..n {
        let Ok(mut c) = TcpStream::connect(server.addr) else {
            break;
        };
        let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n");
        conns.push(c);
    }
    let mut buf = [0u8; 512];
    for c in conns.iter_mut() {
        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = c.read(&mut buf);
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = server.rss_kib();
    (after.saturating_sub(before) as f64 * 1024.0) / conns.len().max(1) as f64
}

fn median_index(values: &[f64]) -> usize {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|a, b| values[*a].total_cmp(&values[*b]));
    idx[idx.len() / 2]
}

/// Run the plan. `progress` is told each run as it starts; `stop` (Ctrl-C) ends the run
/// early and what is done is returned.
pub fn run(
    plan: &Plan,
    backlog_bin: &Path,
    scratch: &Path,
    stop: &AtomicBool,
    progress: &dyn Fn(&str, &str),
) -> Results {
    let started = Instant::now();
    let mut results = Results {
        plan: plan.clone(),
        measurements: Vec::new(),
        idle: Vec::new(),
        syscalls: Vec::new(),
        interrupted: false,
        wall_s: 0.0,
        notes: Vec::new(),
    };
    for t in &plan.targets {
        if !t.available() {
            results
                .notes
                .push(format!("{} skipped: not installed", t.name));
        }
    }
    'scenarios: for s in &plan.scenarios {
        let namespace = if s.netns || s.flood.is_some() {
            let made = if s.flood.is_some() {
                Hosts::pair()
            } else {
                Hosts::create()
            };
            match made {
                Some(ns) => Some(ns),
                None => {
                    results.notes.push(format!(
                        "{} skipped: creating a network namespace needs root and iproute2",
                        s.name
                    ));
                    continue;
                }
            }
        } else {
            None
        };
        if let (Some(ns), Some(flood)) = (&namespace, s.flood) {
            netns::sysctl(
                &ns.server,
                &format!("net.ipv4.tcp_syncookies={}", flood.syncookies),
            );
            netns::sysctl(
                &ns.server,
                &format!("net.ipv4.tcp_max_syn_backlog={}", flood.max_syn_backlog),
            );
        }
        let opts = target::Options {
            threads: plan.threads,
            backlog: s.backlog,
            netns: namespace.as_ref().map(|n| n.server.clone()),
            host: match &namespace {
                Some(ns) if ns.is_pair() => netns::SERVER.into(),
                _ => std::net::Ipv4Addr::LOCALHOST.into(),
            },
        };
        let client_ns = namespace.as_ref().map(|n| n.client.clone());
        let server_ns = namespace
            .as_ref()
            .filter(|n| n.is_pair())
            .map(|n| n.server.as_str());
        for t in plan
            .targets
            .iter()
            .filter(|t| t.available() && s.includes(t))
        {
            let mut runs = Vec::new();
            for _ in 0..plan.repeats {
                if stop.load(Ordering::Relaxed) {
                    results.interrupted = true;
                    break 'scenarios;
                }
                progress(&s.name, &t.name);
                // In a namespace the clients (and every thread they start) must be inside it
                // too: the run happens on a thread that entered it.
                let outcome = std::thread::scope(|scope| {
                    scope
                        .spawn(|| -> anyhow::Result<Run> {
                            if let Some(ns) = &client_ns {
                                sys::netns::enter(ns)?;
                            }
                            let server = target::start(t, backlog_bin, &opts, scratch)?;
                            let run = one_run(plan, s, &server, server_ns, stop);
                            server.stop();
                            Ok(run)
                        })
                        .join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("the run panicked")))
                });
                match outcome {
                    Ok(run) => runs.push(run),
                    Err(err) => results
                        .notes
                        .push(format!("{} / {}: {err:#}", s.name, t.name)),
                }
            }
            if runs.is_empty() {
                continue;
            }
            let rps: Vec<f64> = runs.iter().map(|r| r.result.rps()).collect();
            let mid = &runs[median_index(&rps)];
            let h = &mid.result.latency;
            let reqs = mid.result.requests.max(1) as f64;
            let mut errors = BTreeMap::new();
            for r in &runs {
                for (k, v) in &r.result.errors {
                    *errors.entry(k.clone()).or_insert(0) += v;
                }
            }
            let window = plan.duration.as_secs_f64();
            results.measurements.push(Measurement {
                scenario: s.name.clone(),
                target: t.name.clone(),
                rps: mid.result.rps(),
                rps_runs: rps.clone(),
                p50_us: h.value_at_quantile(0.5),
                p90_us: h.value_at_quantile(0.9),
                p99_us: h.value_at_quantile(0.99),
                p999_us: h.value_at_quantile(0.999),
                max_us: h.max(),
                cdf: [
                    0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999, 1.0,
                ]
                .iter()
                .map(|q| (*q * 100.0, h.value_at_quantile(*q)))
                .collect(),
                errors,
                server_cpu_us: mid.server_cpu * 1e6 / reqs,
                server_sys_us: mid.server_sys * 1e6 / reqs,
                client_cpu_us: mid.client_cpu * 1e6 / reqs,
                client_limited: mid.client_cpu
                    >= 0.9 * window * s.client_threads.unwrap_or(plan.client_threads) as f64,
                rss_kib: mid.rss,
                accept_queue_peak: mid.queues.iter().map(|q| q.1).max(),
                listen_overflows: mid.tcp_ext.get("ListenOverflows"),
                syn_recv_peak: mid.queues.iter().map(|q| q.2).max().unwrap_or(0),
                tcp_ext: mid
                    .tcp_ext
                    .counters
                    .iter()
                    .filter(|(_, v)| **v > 0)
                    .map(|(k, v)| (k.clone(), *v))
                    .collect(),
                queues: mid.queues.clone(),
                per_thread: mid.per_thread.clone(),
                voluntary_switches: mid.switches.0 as f64 / reqs,
                involuntary_switches: mid.switches.1 as f64 / reqs,
            });
        }
    }
    if !results.interrupted {
        // Idle memory and syscalls for the main targets; extra shapes and the sweep run only
        // their own scenarios.
        for t in plan
            .targets
            .iter()
            .filter(|t| t.available() && t.only.is_empty())
        {
            if stop.load(Ordering::Relaxed) {
                results.interrupted = true;
                break;
            }
            progress("idle-memory", &t.name);
            let opts = target::Options {
                threads: plan.threads,
                host: std::net::Ipv4Addr::LOCALHOST.into(),
                ..Default::default()
            };
            if let Ok(server) = target::start(t, backlog_bin, &opts, scratch) {
                let per = idle_memory(&server, plan.idle_connections);
                results.idle.push(IdleMemory {
                    target: t.name.clone(),
                    connections: plan.idle_connections,
                    bytes_per_connection: per,
                });
                server.stop();
            }
            if plan.syscalls && crate::syscalls::available() {
                for pipeline in [1, 16] {
                    progress("syscalls", &t.name);
                    if let Ok(server) = target::start(t, backlog_bin, &opts, scratch) {
                        if let Some(per) = crate::syscalls::per_request(
                            &server,
                            64,
                            pipeline,
                            Duration::from_secs(2),
                            stop,
                        ) {
                            results.syscalls.push(SyscallCount {
                                target: t.name.clone(),
                                pipeline,
                                per_request: per,
                            });
                        }
                        server.stop();
                    }
                }
            }
        }
    }
    results.wall_s = started.elapsed().as_secs_f64();
    results
}

/// Where the lab keeps server scratch directories.
pub fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("backlog-lab-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_split_the_thread_budget_and_only_reloadable_servers_reload() {
        let plan = Plan::new(false, 2);
        let reload = plan.scenarios.iter().find(|s| s.name == "reload").unwrap();
        let mixed = plan.scenarios.iter().find(|s| s.name == "mixed").unwrap();
        let procs = Target::backlog("r", "reuseport", &["--processes", "2"]);
        assert_eq!(procs.processes(), 2);
        assert!(reload.includes(&procs) && mixed.includes(&procs));
        let plain = Target::backlog("s", "single", &[]);
        assert_eq!(plain.processes(), 1);
        assert!(!reload.includes(&plain));
        let nginx = Target::anchor("nginx", target::Kind::Nginx { workers: 2 });
        assert!(reload.includes(&nginx));
        assert!(!mixed.includes(&nginx), "/work is backlog's");
    }

    #[test]
    fn extra_shapes_and_the_sweep_run_only_their_workloads() {
        let plan = Plan::new(false, 2);
        let sweep: Vec<&Target> = plan
            .targets
            .iter()
            .filter(|t| t.name.starts_with("sweep/"))
            .collect();
        assert_eq!(sweep.len(), 3 * SWEEP_READERS.len());
        let shapes = plan.targets.iter().filter(|t| t.is_backlog()).count();
        assert!(
            shapes - sweep.len() >= 8,
            "at least 8 shapes besides the sweep"
        );
        for s in &plan.scenarios {
            let runs_sweep = sweep.iter().any(|t| s.includes(t));
            assert_eq!(
                runs_sweep,
                SWEEP_SCENARIOS.contains(&s.name.as_str()),
                "{}",
                s.name
            );
        }
    }
}
