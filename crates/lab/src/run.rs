//! The loop that measures: each scenario against each target, each server its own process on
//! a fresh port, with a warm-up before measuring; each figure is the median of the repeats,
//! with the spread kept. Server CPU per request (user + system time of the server's processes
//! over the measured window, from /proc) is the figure that decides: on two cores the client
//! is often the limit on requests/s, and the report says when it was.

use crate::loadgen::{self, LoadResult, LoadSpec, Pace, Reuse};
use crate::netns::{self, Hosts};
use crate::plan::Plan;
use crate::results::{IdleMemory, Measurement, RequestLatency, Results, SyscallCount};
use crate::scenario::{bursts, never_read, syn_flood, trickle, Scenario, TlsLoad};
use crate::target::{self, Running, Target};
use crate::tls::LabTls;
use admin::QueueWaits;
use backlog_server::queue_wait::WaitSnapshot;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
    /// Accept-queue and receive-queue waits counted during the window (backlog only).
    waits: Option<(WaitSnapshot, WaitSnapshot)>,
    /// (seconds, accept-queue p99 µs, receive-queue p99 µs) every 500 ms, where the scenario
    /// plots them.
    waits_over_time: Vec<(f64, Option<u64>, Option<u64>)>,
}

/// The waits the server's threads counted between two of its states: the whole server's
/// accept-queue and receive-queue histograms.
fn waits_between(before: &admin::State, after: &admin::State) -> (WaitSnapshot, WaitSnapshot) {
    let (mut accept, mut receive) = (WaitSnapshot::default(), WaitSnapshot::default());
    for t in &after.threads {
        let b = before
            .threads
            .iter()
            .find(|o| o.counters.name == t.counters.name);
        let (a, r) = t.counters.waits_since(b.map(|b| &b.counters));
        accept.merge(&a);
        receive.merge(&r);
    }
    (accept, receive)
}

/// The server's queue waits every 500 ms while `measuring`: each sample is the interval
/// since the previous one (the admin endpoint's own). Only where a scenario plots them: each
/// poll costs the server a state sample, which the other targets do not pay.
fn watch_waits(
    server: &Running,
    server_ns: Option<&str>,
    warmup: Duration,
    measuring: &AtomicBool,
) -> Vec<(f64, Option<u64>, Option<u64>)> {
    let Some(admin) = server.admin else {
        return Vec::new();
    };
    if let Some(ns) = server_ns {
        if sys::netns::enter(ns).is_err() {
            return Vec::new();
        }
    }
    std::thread::sleep(warmup);
    let start = Instant::now();
    let _ = target::admin_state(admin); // the interval starts here
    let mut out = Vec::new();
    while measuring.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(500));
        if let Some(state) = target::admin_state(admin) {
            out.push((
                start.elapsed().as_secs_f64(),
                state.waits.accept_p99_us,
                state.waits.receive_p99_us,
            ));
        }
    }
    out
}

/// What the kernel shows about the server's port while a run measures, read from the
/// server's own network namespace: queues every 100 ms, TcpExt counters before and after.
struct Watch {
    queues: Vec<(f64, u32, u32)>,
    tcp_ext: kernel::TcpExt,
}

fn watch(
    server_ns: Option<&str>,
    addr: std::net::SocketAddr,
    warmup: Duration,
    measuring: &AtomicBool,
) -> Watch {
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
    // Counting SYN_RECV walks every socket on the host (tens of ms in a storm, on the cores
    // the server needs): at most 1/20 of a core here, so the walk between samples may stand.
    let mut syn_gauge = kernel::SynRecvGauge::new(20);
    while measuring.load(Ordering::Relaxed) {
        let accept = kernel::listen_queues(addr.port()).map_or(0, |q| q.queued);
        let syn = syn_gauge.count(addr).unwrap_or(0);
        queues.push((start.elapsed().as_secs_f64(), accept, syn));
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = kernel::TcpExt::read().unwrap_or_default();
    Watch {
        queues,
        tcp_ext: after.since(&before),
    }
}

/// How often a handshake storm's burst of new connections arrives.
const STORM_EVERY: Duration = Duration::from_millis(250);

fn one_run(
    plan: &Plan,
    s: &Scenario,
    server: &Running,
    server_ns: Option<&str>,
    tls: Option<&LabTls>,
    stop: &AtomicBool,
) -> Run {
    let client = |mode: TlsLoad| tls.map(|t| t.client(mode == TlsLoad::Resumed));
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
        reuse: match (s.churn, s.per_connection) {
            (true, _) => Reuse::Churn,
            (false, Some(n)) => Reuse::Limited(n),
            (false, None) => Reuse::KeepAlive,
        },
        pipeline: s.pipeline,
        requests: s.requests(),
        timeout: Duration::from_secs(5),
        cpus: plan.client_cpus.clone(),
        tls: s.tls.and_then(client),
        nice: 0,
    };
    // The handshake storm: bursts of new connections, each a full handshake and one
    // request, for the warm-up and the measured window, beside the measured clients.
    let storm = (s.storm > 0).then(|| LoadSpec {
        connections: s.storm,
        threads: 1,
        duration: warmup + plan.duration,
        warmup: Duration::ZERO,
        pace: Pace::Bursts(STORM_EVERY),
        reuse: Reuse::Churn,
        pipeline: 1,
        tls: client(TlsLoad::Full),
        // The storm's client handshakes cost about what the server's do; on the client's
        // cores they must not delay the measured clients, whose latency is the figure.
        nice: 10,
        ..spec.clone()
    });
    let measuring = AtomicBool::new(true);
    let before_state = server_admin_state(server, server_ns);
    let mut cpu = ((0.0, 0.0), 0.0);
    let mut switches_before = (0, 0);
    let mut watched = None;
    let mut waits_over_time = Vec::new();
    let result = std::thread::scope(|scope| {
        // CPU from the end of the warm-up.
        let baseline = scope.spawn(|| {
            std::thread::sleep(warmup);
            let switches = server.context_switches();
            ((server.cpu_split(), target::own_cpu_seconds()), switches)
        });
        let kernel = scope.spawn(|| watch(server_ns, server.addr, warmup, &measuring));
        let over_time = s
            .plots_waits()
            .then(|| scope.spawn(|| watch_waits(server, server_ns, warmup, &measuring)));
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
        if let Some(storm) = &storm {
            scope.spawn(move || loadgen::run(storm, stop));
        }
        let r = loadgen::run(&spec, stop);
        measuring.store(false, Ordering::Relaxed);
        (cpu, switches_before) = baseline.join().unwrap_or((((0.0, 0.0), 0.0), (0, 0)));
        watched = kernel.join().ok();
        waits_over_time = over_time.and_then(|t| t.join().ok()).unwrap_or_default();
        r
    });
    let (user, sys) = server.cpu_split();
    let switches_after = server.context_switches();
    let after_state = server_admin_state(server, server_ns);
    let waits = match (&before_state, &after_state) {
        (Some(b), Some(a)) => Some(waits_between(b, a)),
        _ => None,
    };
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
        waits,
        waits_over_time,
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

/// Hold `n` idle keep-alive connections (each answered once) and measure RSS growth.
/// Bytes of RSS each idle keep-alive connection adds: the growth from `n / 2` to `n` open
/// connections, each having made one request. The slope, not the total over the count: a
/// server's fixed costs touched by its first connections (an io_uring loop's buffer pool,
/// tables sized once) are not per-connection costs.
fn idle_memory(server: &Running, n: usize) -> f64 {
    use std::io::Read;
    let open = |conns: &mut Vec<TcpStream>, upto: usize| {
        let first = conns.len();
        while conns.len() < upto {
            let Ok(mut c) = TcpStream::connect(server.addr) else {
                break;
            };
            let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n");
            conns.push(c);
        }
        let mut buf = [0u8; 512];
        for c in conns[first..].iter_mut() {
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = c.read(&mut buf);
        }
        std::thread::sleep(Duration::from_millis(300));
        server.rss_kib()
    };
    let mut conns = Vec::new();
    let half = open(&mut conns, n / 2);
    let opened_half = conns.len();
    let full = open(&mut conns, n);
    let added = conns.len().saturating_sub(opened_half);
    (full.saturating_sub(half) as f64 * 1024.0) / added.max(1) as f64
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
    // One certificate for every server of the run's TLS scenarios.
    let tls = match plan.scenarios.iter().any(|s| s.tls.is_some()) {
        true => match LabTls::new(&scratch.join("tls")) {
            Ok(t) => Some(t),
            Err(err) => {
                tracing::warn!(%err, "cannot make the TLS scenarios' certificate");
                None
            }
        },
        false => None,
    };
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
        if let Some(why) = t.unavailable() {
            results.notes.push(format!("{} skipped: {why}", t.name));
        }
    }
    'scenarios: for s in &plan.scenarios {
        if s.tls.is_some() && tls.is_none() {
            results.notes.push(format!(
                "{} skipped: no certificate could be made for it",
                s.name
            ));
            continue;
        }
        // Whether a namespace has been made for this scenario yet: if the first cannot be,
        // none can (not root, no iproute2), and the scenario is skipped.
        let mut made_one = false;
        // Churn on loopback leaves tens of thousands of client sockets in TIME_WAIT for a
        // minute (42k -> 89k over one run), which makes every later connect dearer: churn gets
        // a namespace per run, like the storm, where root can make one; elsewhere the report
        // says how many TIME_WAIT sockets the host held before the runs.
        let mut fresh_for_churn = churn_wants_fresh_namespace(s);
        let mut most_time_wait: Option<u64> = None;
        // Repeats go round the targets (each target's first run, then each one's second...),
        // not one target's runs in a block: whatever drifts over the scenario — the machine's
        // other load, the client's TIME_WAIT sockets piling up on loopback outside a
        // namespace — then falls on every target alike instead of on whichever ran last.
        let targets: Vec<&Target> = plan
            .targets
            .iter()
            .filter(|t| t.available() && s.includes(t))
            .collect();
        let mut runs: Vec<Vec<Run>> = targets.iter().map(|_| Vec::new()).collect();
        'repeats: for _ in 0..plan.repeats {
            for (t, runs) in targets.iter().zip(&mut runs) {
                if stop.load(Ordering::Relaxed) {
                    results.interrupted = true;
                    break 'repeats;
                }
                progress(&s.name, &t.name);
                // A namespace per run: a run leaves its clients' sockets behind in TIME_WAIT
                // for a minute (74,772 after one churn run), and in a namespace kept for the
                // scenario they made the next run's connects dearer, and every walk of the
                // socket table longer, for whichever target came next.
                let namespace = if s.netns || s.flood.is_some() {
                    match fresh_hosts(s) {
                        Some(ns) => {
                            made_one = true;
                            Some(ns)
                        }
                        None if !made_one => {
                            results.notes.push(format!(
                                "{} skipped: creating a network namespace needs root and iproute2",
                                s.name
                            ));
                            continue 'scenarios;
                        }
                        None => {
                            results.notes.push(format!(
                                "{} / {}: could not create its network namespace",
                                s.name, t.name
                            ));
                            continue;
                        }
                    }
                } else if fresh_for_churn {
                    let ns = fresh_hosts(s);
                    if ns.is_none() {
                        fresh_for_churn = false;
                    }
                    ns
                } else {
                    None
                };
                if namespace.is_none() && s.churn {
                    if let Some(tw) = host_time_wait() {
                        most_time_wait = Some(most_time_wait.unwrap_or(0).max(tw));
                    }
                }
                let opts = target::Options {
                    threads: plan.threads,
                    backlog: s.backlog,
                    endpoints: s.endpoints,
                    cpus: plan.server_cpus.clone(),
                    tls: s.tls.and(tls.as_ref()).map(|t| t.files.clone()),
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
                // In a namespace the clients (and every thread they start) must be inside it
                // too: the run happens on a thread that entered it.
                let outcome = std::thread::scope(|scope| {
                    scope
                        .spawn(|| -> anyhow::Result<Run> {
                            if let Some(ns) = &client_ns {
                                sys::netns::enter(ns)?;
                            }
                            let server = target::start(t, backlog_bin, &opts, scratch)?;
                            let run = one_run(plan, s, &server, server_ns, tls.as_ref(), stop);
                            server.stop();
                            Ok(run)
                        })
                        .join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("the run panicked")))
                });
                if namespace.is_some() {
                    drop(namespace);
                    settle_after_namespace();
                }
                match outcome {
                    Ok(run) => runs.push(run),
                    Err(err) => results
                        .notes
                        .push(format!("{} / {}: {err:#}", s.name, t.name)),
                }
            }
        }
        if let Some(tw) = most_time_wait.filter(|&tw| tw >= TIME_WAIT_WARN) {
            results.notes.push(format!(
                "{}: the host held up to {tw} sockets in TIME_WAIT before a run (no network namespace per run: that needs root and iproute2); connects get dearer as they pile up, so compare targets within a round, and expect lower connection rates than on a quiet host",
                s.name
            ));
        }
        for (t, runs) in targets.iter().zip(&runs) {
            if !runs.is_empty() {
                results.measurements.push(summarise(plan, s, &t.name, runs));
            }
        }
        if results.interrupted {
            break 'scenarios;
        }
    }
    if !results.interrupted {
        side_figures(plan, backlog_bin, scratch, stop, progress, &mut results);
    }
    results.wall_s = started.elapsed().as_secs_f64();
    results
}

/// TIME_WAIT sockets on the host past which churn figures carry a warning.
const TIME_WAIT_WARN: u64 = 10_000;

/// Whether `s` is a plain churn scenario, which runs in a fresh namespace when it can.
fn churn_wants_fresh_namespace(s: &Scenario) -> bool {
    s.churn && !s.netns && s.flood.is_none() && s.reload_every.is_none()
}

/// Sockets in TIME_WAIT in this process's network namespace (`tw` in /proc/net/sockstat).
fn host_time_wait() -> Option<u64> {
    parse_time_wait(&std::fs::read_to_string("/proc/net/sockstat").ok()?)
}

fn parse_time_wait(sockstat: &str) -> Option<u64> {
    let tcp = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = tcp.split_whitespace();
    while let Some(w) = words.next() {
        if w == "tw" {
            return words.next()?.parse().ok();
        }
    }
    None
}

/// New hosts for a run of `s` (one namespace, or a pair for floods), with the scenario's
/// sysctls; `None` if they cannot be made (not root, no iproute2).
fn fresh_hosts(s: &Scenario) -> Option<Hosts> {
    let Some(flood) = s.flood else {
        return Hosts::create();
    };
    let ns = Hosts::pair()?;
    netns::sysctl(
        &ns.server,
        &format!("net.ipv4.tcp_syncookies={}", flood.syncookies),
    );
    netns::sysctl(
        &ns.server,
        &format!("net.ipv4.tcp_max_syn_backlog={}", flood.max_syn_backlog),
    );
    Some(ns)
}

/// The kernel tears a deleted namespace down in the background, purging its sockets (tens of
/// thousands in TIME_WAIT after a churn run) with a walk of the host's socket table: let that
/// finish before the next run starts measuring.
fn settle_after_namespace() {
    std::thread::sleep(NAMESPACE_SETTLE);
}

/// How long [`settle_after_namespace`] waits.
const NAMESPACE_SETTLE: Duration = Duration::from_millis(500);

/// One figure per scenario and target from its runs: the median run by requests/s, the
/// spread of all of them, and the errors of every run.
fn summarise(plan: &Plan, s: &Scenario, target: &str, runs: &[Run]) -> Measurement {
    let rps: Vec<f64> = runs.iter().map(|r| r.result.rps()).collect();
    let p99s: Vec<u64> = runs
        .iter()
        .map(|r| r.result.latency.value_at_quantile(0.99))
        .collect();
    // At a fixed rate every run answers the same requests/s: the median run is the one with
    // the median p99, the figure such a run is for.
    let mid = match s.rate {
        Some(_) => &runs[median_index(&p99s.iter().map(|&p| p as f64).collect::<Vec<_>>())],
        None => &runs[median_index(&rps)],
    };
    let h = &mid.result.latency;
    let reqs = mid.result.requests.max(1) as f64;
    let mut errors = BTreeMap::new();
    for r in runs {
        for (k, v) in &r.result.errors {
            *errors.entry(k.clone()).or_insert(0) += v;
        }
    }
    let window = plan.duration.as_secs_f64();
    Measurement {
        scenario: s.name.clone(),
        target: target.to_string(),
        rps: mid.result.rps(),
        rps_runs: rps.clone(),
        p99_runs: p99s,
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
        overflows_runs: runs
            .iter()
            .map(|r| r.tcp_ext.get("ListenOverflows"))
            .collect(),
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
        queue_waits: mid.waits.as_ref().map(|(a, r)| QueueWaits::of(a, r)),
        waits_over_time: mid.waits_over_time.clone(),
        voluntary_switches: mid.switches.0 as f64 / reqs,
        involuntary_switches: mid.switches.1 as f64 / reqs,
        by_request: by_request(s, &mid.result),
    }
}

/// Each request's latency in a mix of more than one (none for a single request: the
/// overall figures are its own).
fn by_request(s: &Scenario, result: &LoadResult) -> Vec<RequestLatency> {
    if result.latency_by_request.len() < 2 {
        return Vec::new();
    }
    s.request_names()
        .into_iter()
        .zip(&result.latency_by_request)
        .map(|(request, h)| RequestLatency {
            request,
            answers: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
        })
        .collect()
}

/// Idle memory and syscalls per request for the main targets (extra shapes and the sweep run
/// only their own scenarios), each on a server of its own.
fn side_figures(
    plan: &Plan,
    backlog_bin: &Path,
    scratch: &Path,
    stop: &AtomicBool,
    progress: &dyn Fn(&str, &str),
    results: &mut Results,
) {
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

/// Where the lab keeps server scratch directories.
pub fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("backlog-lab-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_wait_is_read_from_sockstat() {
        let text = "sockets: used 310\nTCP: inuse 12 orphan 0 tw 42137 alloc 20 mem 3\nUDP: inuse 1 mem 0\n";
        assert_eq!(parse_time_wait(text), Some(42_137));
        assert_eq!(parse_time_wait("TCP: inuse 1\n"), None);
        assert!(
            host_time_wait().is_some(),
            "this kernel has /proc/net/sockstat"
        );
    }

    #[test]
    fn only_plain_churn_asks_for_a_namespace_of_its_own() {
        let plan = crate::plan::Plan::new(false, 2);
        let wants: Vec<&str> = plan
            .scenarios
            .iter()
            .filter(|s| churn_wants_fresh_namespace(s))
            .map(|s| s.name.as_str())
            .collect();
        assert!(wants.contains(&"churn"), "{wants:?}");
        assert!(!wants
            .iter()
            .any(|n| n.starts_with("syn-flood") || *n == "reload"));
    }
}
