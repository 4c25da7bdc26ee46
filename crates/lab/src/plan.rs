//! The run plan: which scenarios against which targets — the five models, their variants,
//! shapes no preset has, the thread sweep and the anchors — for `--quick` (CI) or the full run.
//! Adding a shape is adding a row to a target list.

use crate::scenario::{Flood, Scenario};
use crate::target::{self, Target};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The workloads extra shapes run in: steady, churning, and mixed fast and slow handlers.
pub const SHAPE_SCENARIOS: [&str; 3] = ["keepalive-64", "churn", "mixed"];
/// The workloads the axum targets run in: what the connection handling decides.
pub const AXUM_SCENARIOS: [&str; 9] = [
    "keepalive-64",
    "churn",
    "churn-10",
    "churn-10-fixed-rate",
    "pipelined-16",
    "mixed",
    "mixed-fixed-rate",
    "fixed-rate",
    "fixed-rate-50k",
];
/// The mixed loads, where a shape's answer to long handlers shows.
pub const MIXED_SCENARIOS: [&str; 2] = ["mixed", "mixed-fixed-rate"];

/// The business in the background (`--business-priority background`).
const BACKGROUND: [&str; 2] = ["--business-priority", "background"];
/// … with the routes that prove cheap answered on the readers as well.
const BACKGROUND_INLINE: [&str; 4] = [
    "--business-priority",
    "background",
    "--inline-answers",
    "learned",
];

/// The background shapes: a reader per thread on its own socket, four workers per reader
/// (so that a short request finds one free beside the long ones).
fn background_shape(threads: usize) -> String {
    format!(
        "listeners={threads} readers={threads} workers={}",
        4 * threads
    )
}
/// The same in `--quick` (CI).
pub const AXUM_QUICK_SCENARIOS: [&str; 2] = ["keepalive-64", "churn"];

/// HttpArena's three connection profiles.
pub const ARENA_SCENARIOS: [&str; 3] = ["arena-baseline", "arena-pipelined", "arena-limited-conn"];
/// The backlog shapes that run them: one event loop per thread, under both interfaces (the
/// field's engines are thread-per-core), and the default shape without queue timing (the
/// engines observe nothing: that row prices backlog's observation against them).
pub const ARENA_SHAPES: [&str; 5] = [
    "single",
    "reuseport",
    "single io_uring",
    "reuseport io_uring",
    "reuseport timing-off",
];

/// HttpArena's request mix: GET with a query, POST with a Content-Length body, POST with
/// a chunked body (its get.raw, post_cl.raw and post_chunked.raw).
fn arena_mix() -> Vec<(u32, String)> {
    [
        "GET /baseline11?a=13&b=42 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "POST /baseline11?a=13&b=42 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n20",
        "POST /baseline11?a=13&b=42 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n20\r\n0\r\n\r\n",
    ]
    .into_iter()
    .map(|r| (1, r.to_string()))
    .collect()
}

/// HttpArena's engine profiles at its smaller connection count (512): `baseline` (the mix,
/// keep-alive), `pipelined` (`/pipeline`, 16 per write) and `limited-conn` (the mix, the
/// client closes after 10 answers).
fn arena_scenarios() -> Vec<Scenario> {
    use crate::engine::Endpoints;
    let arena = |name: &str, about: &str| {
        let about = format!(
            "{about}. The floor rows are the arena engine: the same loops, parsing and \
             answering these endpoints correctly and doing nothing else (no limits, timeouts \
             or observation), the class of the field's minimal thread-per-core engines"
        );
        let mut s = Scenario::new(name, &about, 512);
        s.endpoints = Endpoints::Arena;
        s.raw = arena_mix();
        s.shapes = ARENA_SHAPES.iter().map(|s| s.to_string()).collect();
        s
    };
    let baseline = arena(
        "arena-baseline",
        "HttpArena's baseline: GET /baseline11?a=13&b=42 and POSTs of a number (Content-Length, chunked) in turn, keep-alive, 512 connections; nginx cannot add without a module and sits out",
    );
    let mut pipelined = arena(
        "arena-pipelined",
        "HttpArena's pipelined: GET /pipeline, 16 requests per write, 512 connections",
    );
    pipelined.raw.clear();
    pipelined.mix = vec![(1, "/pipeline".into())];
    pipelined.pipeline = 16;
    let mut limited = arena(
        "arena-limited-conn",
        "HttpArena's limited-conn: the baseline mix, the client closes each connection after 10 answers, 512 connections",
    );
    limited.per_connection = Some(10);
    vec![baseline, pipelined, limited]
}

/// The TLS scenarios.
pub const TLS_SCENARIOS: [&str; 4] = [
    "tls-keepalive",
    "tls-churn-full",
    "tls-churn-resumed",
    "tls-storm",
];
/// The backlog shapes that run them: handshakes on the readers of a thread-per-core shape
/// and of dispatch, and on dispatch's acceptor.
pub const TLS_SHAPES: [&str; 3] = ["reuseport", "dispatch", "dispatch handshake=acceptors"];

/// Keep-alive over TLS, churn with a full handshake per connection, churn with
/// resumption, and a handshake storm beside established clients.
fn tls_scenarios() -> Vec<Scenario> {
    use crate::scenario::TlsLoad;
    let tls = |name: &str, about: &str, mode: TlsLoad| {
        let about = format!(
            "{about}. Every server presents the same ECDSA P-256 certificate; the clients \
             offer TLS 1.3 with AES-128-GCM and X25519 only, so each does the same \
             cryptography"
        );
        let mut s = Scenario::new(name, &about, 64);
        s.tls = Some(mode);
        s.shapes = TLS_SHAPES.iter().map(|s| s.to_string()).collect();
        s
    };
    let keepalive = tls(
        "tls-keepalive",
        "keep-alive GET / over TLS, 64 connections",
        TlsLoad::Resumed,
    );
    let mut full = tls(
        "tls-churn-full",
        "a new TLS connection per request, 64 at a time, each a full handshake (the client keeps no session)",
        TlsLoad::Full,
    );
    full.churn = true;
    let mut resumed = tls(
        "tls-churn-resumed",
        "a new TLS connection per request, 64 at a time, each resuming an earlier session (tickets)",
        TlsLoad::Resumed,
    );
    resumed.churn = true;
    let mut storm = tls(
        "tls-storm",
        "32 established keep-alive clients at a fixed 2,000 requests/s (latency from each request's intended send time) while bursts of 64 new connections arrive every 250 ms, each a full handshake and one request: the established clients' p99 is the figure",
        TlsLoad::Resumed,
    );
    storm.connections = 32;
    storm.rate = Some(2_000.0);
    storm.storm = 64;
    vec![keepalive, full, resumed, storm]
}

/// The workloads of the thread sweep.
pub const SWEEP_SCENARIOS: [&str; 2] = ["keepalive-64", "mixed"];
/// Reader counts of the thread sweep: up to well past this machine's cores.
pub const SWEEP_READERS: [usize; 5] = [1, 2, 4, 8, 16];

/// The thread sweep ("how many is too many"): readers 1…16 for reuseport, dispatch and a
/// hybrid with two acceptors and a two-worker pool, named `sweep/<shape>/<readers>`.
/// Where the reuseport target with queue timing off runs beside the default one.
pub const TIMING_SCENARIOS: [&str; 6] = [
    "keepalive-64",
    "pipelined-16",
    "churn",
    "arena-baseline",
    "arena-pipelined",
    "arena-limited-conn",
];

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
    /// The CPUs the servers are pinned to (empty: not pinned), chosen once by [`Plan::pin`]
    /// and kept with the results, so a report rewritten elsewhere says what was measured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_cpus: Vec<usize>,
    /// The CPUs the load generator is pinned to (empty: not pinned).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_cpus: Vec<usize>,
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
        let mut churn10 = Scenario::new(
            "churn-10",
            "keep-alive, the client closes each connection after 10 answers (HttpArena's limited-conn), 64 at a time",
            64,
        );
        churn10.per_connection = Some(10);
        let churn10_fixed = churn10.at_rate(
            "churn-10-fixed-rate",
            "the client closes each connection after 10 answers, 64 at a time, at a fixed 30,000 requests/s (about 60% of what two threads serve here): latency from each request's intended send time, the load generator not saturated",
            30_000.0,
        );
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
        let mixed_fixed = mixed.at_rate(
            "mixed-fixed-rate",
            "95% GET /, 5% GET /work?spin_us=2000 at a fixed 10,000 requests/s (about two-thirds of what two threads serve of this mix here): head-of-line blocking with the load generator not saturated",
            10_000.0,
        );
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
        // Near capacity but below it: a closed loop at full speed saturates the load
        // generator sharing the cores, and its latencies are then its own queueing.
        let fixed_high = fixed.at_rate(
            "fixed-rate-50k",
            "keep-alive GET /, 64 connections at a fixed 50,000 requests/s, two-thirds of what two threads serve here: latency from each request's intended send time, the load generator not saturated",
            50_000.0,
        );
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
            // The second I/O interface, on the simplest shape and on the default one.
            Target::backlog("single io_uring", "single", &["--io", "uring"]),
            // Who shakes hands: dispatch's acceptor instead of its readers.
            Target::backlog(
                "dispatch handshake=acceptors",
                "dispatch",
                &["--handshake", "acceptors"],
            )
            .only(&TLS_SCENARIOS),
        ];
        if !quick {
            targets.push(Target::backlog(
                "reuseport io_uring",
                "reuseport",
                &["--io", "uring"],
            ));
            // One shared socket under io_uring: the kernel's own exclusive accept, where
            // the storm tells the accept paths apart.
            targets.push(
                Target::backlog("shared io_uring", "shared", &["--io", "uring"]).only(&[
                    "accept-storm",
                    "churn",
                    "keepalive-64",
                ]),
            );
        }
        if !quick {
            // The price of counting queue waits: the default shape (sampled timing) with
            // every read timed and with none, on the workloads where per-request CPU shows.
            targets.extend(["on", "off"].map(|timing| {
                Target::backlog(
                    &format!("reuseport timing-{timing}"),
                    "reuseport",
                    &["--queue-timing", timing],
                )
                .only(&TIMING_SCENARIOS)
            }));
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
                // The same readers with the handlers in the background, four workers each:
                // the native handler's side of `axum on backlog background`.
                Target::backlog(
                    "reuseport readers + background pool",
                    &background_shape(threads),
                    &BACKGROUND,
                )
                .only(&MIXED_SCENARIOS),
                // The same with the routes that prove cheap answered on the readers.
                Target::backlog(
                    "reuseport readers + background pool + inline",
                    &background_shape(threads),
                    &BACKGROUND_INLINE,
                )
                .only(&MIXED_SCENARIOS),
            ]);
            targets.extend(sweep_targets());
        }
        // The physical floor under both I/O interfaces: what any server here must spend.
        targets.extend([
            Target::anchor(
                "floor (epoll)",
                target::Kind::Floor {
                    io: backlog_server::Io::Epoll,
                },
            ),
            Target::anchor(
                "floor (io_uring)",
                target::Kind::Floor {
                    io: backlog_server::Io::Uring,
                },
            ),
        ]);
        targets.push(Target::anchor(
            &format!("nginx ({threads} workers)"),
            target::Kind::Nginx {
                workers: threads,
                reuseport: true,
            },
        ));
        if !quick {
            // The storm compares overflow counts, which depend on queue capacity: the
            // single-socket shapes against nginx on one socket too.
            targets.push(
                Target::anchor(
                    &format!("nginx ({threads} workers, one socket)"),
                    target::Kind::Nginx {
                        workers: threads,
                        reuseport: false,
                    },
                )
                .only(&["accept-storm"]),
            );
        }
        // Listed whether or not this binary has it: without the feature the run says it
        // is skipped and why, as for a missing nginx or Node.
        targets.push(Target::anchor(
            &format!("hyper ({threads} threads)"),
            target::Kind::Hyper,
        ));
        // One axum app, on axum::serve and on backlog's shapes: what the connection
        // handling costs a tower service.
        let axum_only: &[&str] = if quick {
            &AXUM_QUICK_SCENARIOS
        } else {
            &AXUM_SCENARIOS
        };
        targets.push(
            Target::anchor(
                &format!("axum (axum::serve, {threads} threads)"),
                target::Kind::Axum,
            )
            .only(axum_only),
        );
        // The same with TCP_NODELAY: the default stalls on pipelined rounds (Nagle against
        // delayed ACKs), which makes its CPU per request an idle server's.
        targets.push(
            Target::anchor(
                &format!("axum (axum::serve, TCP_NODELAY, {threads} threads)"),
                target::Kind::AxumNodelay,
            )
            .only(axum_only),
        );
        // (name, shape, flags besides the app): the interface is backlog's dimension too,
        // and io_uring's batched submissions are where a service's requests can cost fewer
        // syscalls than tokio's readiness loop makes.
        let mut axum_shapes: Vec<(&str, String, &[&str], &[&str])> =
            vec![("reuseport", "reuseport".to_string(), &[], axum_only)];
        if !quick {
            axum_shapes.extend([
                (
                    "reuseport io_uring",
                    "reuseport".to_string(),
                    &["--io", "uring"][..],
                    axum_only,
                ),
                ("dispatch", "dispatch".to_string(), &[], axum_only),
                ("pool", "pool".to_string(), &[], axum_only),
                (
                    "hybrid",
                    format!("listeners=1 acceptors=1 readers={threads} workers={threads}"),
                    &[],
                    axum_only,
                ),
                // The business on workers of its own in the background: a reader that
                // wakes takes the core from a handler at once. Workers 4 per reader, so a
                // short request finds one free beside the long ones.
                (
                    "background",
                    background_shape(threads),
                    &BACKGROUND,
                    &MIXED_SCENARIOS,
                ),
                // The same, with the routes that prove cheap on the workers answered on the
                // readers (no hop for them, while the workers keep up).
                (
                    "background + inline",
                    background_shape(threads),
                    &BACKGROUND_INLINE,
                    &MIXED_SCENARIOS,
                ),
            ]);
        }
        for (name, shape, flags, scenarios) in axum_shapes {
            let mut extra = vec!["--app", "axum"];
            extra.extend(flags);
            targets.push(
                Target::backlog(&format!("axum on backlog {name}"), &shape, &extra).only(scenarios),
            );
        }
        // The field's engines for HttpArena's profiles: they serve its endpoints only.
        targets.extend([
            Target::anchor(
                &format!("actix-web ({threads} workers)"),
                target::Kind::Peer(target::Peer::Actix),
            ),
            Target::anchor(
                &format!("may-minihttp ({threads} threads)"),
                target::Kind::Peer(target::Peer::MayMinihttp),
            ),
        ]);
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
        let arena = arena_scenarios();
        let tls = tls_scenarios();
        let scenarios = if quick {
            let mut quick = vec![keepalive, churn, pipelined, mixed, reload];
            quick.extend(arena.into_iter().take(1));
            // Full handshakes: the costliest TLS path, under every placement.
            quick.extend(tls.into_iter().filter(|s| s.name == "tls-churn-full"));
            quick
        } else {
            vec![
                keepalive,
                big,
                churn,
                churn10,
                churn10_fixed,
                pipelined,
                mixed,
                fixed,
                fixed_high,
                mixed_fixed,
                slowloris,
                slow_readers,
                reload,
                storm,
                flood(0),
                flood(1),
            ]
            .into_iter()
            .chain(arena)
            .chain(tls)
            .collect()
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
            server_cpus: Vec::new(),
            client_cpus: Vec::new(),
        }
    }

    /// Pin (HttpArena's way: the server's cores are its own): the servers to the first
    /// `threads` of this process's CPUs, the load generator to the rest. Nothing is pinned
    /// when no CPU would be left for the load; returns whether it pinned.
    pub fn pin(&mut self) -> bool {
        let all = sys::process::affinity().unwrap_or_default();
        if all.len() <= self.threads {
            return false;
        }
        let (server, client) = all.split_at(self.threads);
        self.server_cpus = server.to_vec();
        self.client_cpus = client.to_vec();
        true
    }

    /// Adds the target `asked` names when it is no planned target's name but a shape:
    /// a topology ("listeners=1 readers=2 workers=4"), optionally after "axum on backlog "
    /// (the axum app in that shape, in the axum workloads) and before " io_uring" (the
    /// other I/O interface), so a shape can be measured without adding it to the plan.
    /// Returns whether it added one.
    pub fn add_asked(&mut self, asked: &str) -> Result<bool, String> {
        if self.targets.iter().any(|t| t.name.starts_with(asked)) {
            return Ok(false);
        }
        let (axum, rest) = match asked.strip_prefix("axum on backlog ") {
            Some(rest) => (true, rest),
            None => (false, asked),
        };
        let (uring, shape) = match rest.strip_suffix(" io_uring") {
            Some(shape) => (true, shape),
            None => (false, rest),
        };
        if !shape.contains('=') {
            return Ok(false);
        }
        let shape: target::Shape = shape.parse()?;
        let mut extra = Vec::new();
        if axum {
            extra.extend(["--app", "axum"]);
        }
        if uring {
            extra.extend(["--io", "uring"]);
        }
        let mut t = Target::shaped(asked, shape, &extra);
        if axum {
            t = t.only(&AXUM_SCENARIOS);
        }
        self.targets.push(t);
        Ok(true)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The hyper anchor is always planned; a binary without it says so instead of leaving it
    /// out quietly.
    #[test]
    fn the_hyper_anchor_is_planned_and_says_why_it_is_skipped() {
        let plan = Plan::new(true, 2);
        let hyper = plan
            .targets
            .iter()
            .find(|t| t.name.starts_with("hyper"))
            .expect("planned");
        let reason = hyper.unavailable();
        assert_eq!(reason.is_none(), cfg!(feature = "hyper"), "{reason:?}");
        if let Some(why) = reason {
            assert!(why.contains("--features hyper"), "{why}");
        }
    }

    #[test]
    fn tls_scenarios_run_the_servers_that_speak_tls_under_both_handshake_placements() {
        for quick in [true, false] {
            let plan = Plan::new(quick, 2);
            let tls: Vec<&Scenario> = plan.scenarios.iter().filter(|s| s.tls.is_some()).collect();
            assert!(!tls.is_empty(), "quick={quick}");
            for s in &tls {
                let names: Vec<&str> = plan
                    .targets
                    .iter()
                    .filter(|t| s.includes(t))
                    .map(|t| t.name.as_str())
                    .collect();
                for want in ["reuseport", "dispatch", "dispatch handshake=acceptors"] {
                    assert!(names.contains(&want), "{}: {names:?}", s.name);
                }
                assert!(names.iter().any(|n| n.starts_with("nginx")), "{names:?}");
                assert!(names.iter().any(|n| n.starts_with("hyper")), "{names:?}");
                assert!(
                    plan.targets
                        .iter()
                        .filter(|t| s.includes(t))
                        .all(|t| t.speaks_tls()),
                    "{}: {names:?}",
                    s.name
                );
            }
            // The acceptors' placement is for TLS only.
            let plain = plan.scenarios.iter().find(|s| s.name == "churn").unwrap();
            assert!(!plan
                .targets
                .iter()
                .any(|t| t.name == "dispatch handshake=acceptors" && plain.includes(t)));
        }
    }

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
        let nginx = Target::anchor(
            "nginx",
            target::Kind::Nginx {
                workers: 2,
                reuseport: true,
            },
        );
        assert!(reload.includes(&nginx));
        assert!(!mixed.includes(&nginx), "/work is backlog's");
    }

    #[test]
    fn an_asked_topology_is_added_natively_or_as_the_axum_app_and_on_either_interface() {
        let mut plan = Plan::new(false, 2);
        let before = plan.targets.len();
        assert_eq!(plan.add_asked("reuseport"), Ok(false), "planned");
        assert_eq!(plan.add_asked("no such target"), Ok(false));
        assert!(plan.add_asked("readers=0 workers=9").is_err());
        for asked in [
            "listeners=1 readers=2 workers=4",
            "axum on backlog listeners=1 readers=1 workers=8",
            "axum on backlog listeners=2 readers=2 io_uring",
        ] {
            assert_eq!(plan.add_asked(asked), Ok(true), "{asked}");
        }
        assert_eq!(plan.targets.len(), before + 3);
        let args = |name: &str| match &plan.targets.iter().find(|t| t.name == name).unwrap().kind {
            target::Kind::Backlog { extra, .. } => extra.join(" "),
            _ => unreachable!(),
        };
        assert_eq!(args("listeners=1 readers=2 workers=4"), "");
        assert_eq!(
            args("axum on backlog listeners=1 readers=1 workers=8"),
            "--app axum"
        );
        assert_eq!(
            args("axum on backlog listeners=2 readers=2 io_uring"),
            "--app axum --io uring"
        );
        let axum = plan.targets.last().unwrap();
        let mixed = plan.scenarios.iter().find(|s| s.name == "mixed").unwrap();
        let arena = plan
            .scenarios
            .iter()
            .find(|s| s.name == "arena-baseline")
            .unwrap();
        assert!(mixed.includes(axum) && !arena.includes(axum));
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

    /// HttpArena's profiles run the thread-per-core shapes, the floor (as the arena
    /// engine), hyper and the peers; nginx and may-minihttp only where the load is
    /// `/pipeline` alone (one cannot add, the other cannot read a chunked body); the peers
    /// never run the demo's workloads.
    #[test]
    fn the_arena_profiles_run_the_servers_that_serve_them() {
        let plan = Plan::new(false, 1);
        for name in ARENA_SCENARIOS {
            let s = plan.scenarios.iter().find(|s| s.name == name).unwrap();
            let runs: Vec<&Target> = plan.targets.iter().filter(|t| s.includes(t)).collect();
            let backlog: Vec<&str> = runs
                .iter()
                .filter(|t| t.is_backlog())
                .map(|t| t.name.as_str())
                .collect();
            assert_eq!(backlog, ARENA_SHAPES, "{name}");
            let has = |prefix: &str| runs.iter().any(|t| t.name.starts_with(prefix));
            assert!(
                has("floor (epoll)") && has("hyper") && has("actix-web"),
                "{name}"
            );
            assert!(!has("node") && !has("axum"), "{name}");
            let pipelined = name == "arena-pipelined";
            assert_eq!(has("nginx"), pipelined, "{name}");
            assert_eq!(has("may-minihttp"), pipelined, "{name}");
            let bodies = s.requests().iter().any(|(_, r)| r.starts_with(b"POST"));
            assert_eq!(bodies, !pipelined, "{name}");
        }
        let keepalive = plan
            .scenarios
            .iter()
            .find(|s| s.name == "keepalive-64")
            .unwrap();
        assert!(plan
            .targets
            .iter()
            .filter(|t| matches!(t.kind, target::Kind::Peer(_)))
            .all(|t| !keepalive.includes(t)));
    }

    /// `--pin` gives the servers the first `threads` CPUs and the load the rest; with no
    /// CPU left for the load (or without it), nothing is pinned.
    #[test]
    fn pinning_splits_this_process_cpus_between_server_and_load() {
        let all = sys::process::affinity().unwrap();
        let plan = Plan::new(true, 1);
        assert!(
            plan.server_cpus.is_empty() && plan.client_cpus.is_empty(),
            "off by default"
        );
        if all.len() > 1 {
            let mut pinned = plan.clone();
            assert!(pinned.pin());
            assert_eq!(pinned.server_cpus, all[..1]);
            assert_eq!(pinned.client_cpus, all[1..]);
        }
        let mut crowded = Plan::new(true, all.len());
        assert!(!crowded.pin(), "no CPU left for the load");
        assert!(crowded.server_cpus.is_empty() && crowded.client_cpus.is_empty());
    }
}
