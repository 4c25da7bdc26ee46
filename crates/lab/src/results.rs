//! What a run produced: a measurement per scenario and target, idle memory, syscalls, and
//! the notes — all of it written to results.json, and read back by `backlog lab --from`.

use crate::plan::Plan;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// The 99th percentile of every run, µs (its spread).
    #[serde(default)]
    pub p99_runs: Vec<u64>,
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
    /// ListenOverflows of every run, for the spread.
    #[serde(default)]
    pub overflows_runs: Vec<u64>,
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
    /// How long connections waited in the accept queue and requests in the receive queue,
    /// median run (backlog only: nginx, Node and hyper cannot tell).
    #[serde(default)]
    pub queue_waits: Option<admin::QueueWaits>,
    /// (seconds, accept-queue p99 µs, receive-queue p99 µs) every 500 ms of the median run,
    /// for the scenarios that plot them.
    #[serde(default)]
    pub waits_over_time: Vec<(f64, Option<u64>, Option<u64>)>,
    /// Voluntary context switches of the server's threads per request (median run).
    #[serde(default)]
    pub voluntary_switches: f64,
    /// Involuntary context switches per request: threads preempted, e.g. more than cores.
    #[serde(default)]
    pub involuntary_switches: f64,
    /// In a mix of requests, each one's latency (median run): whether the fast requests
    /// wait behind the slow ones shows here, where the overall percentiles blend the two.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_request: Vec<RequestLatency>,
}

/// One request of a mix: its latency percentiles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestLatency {
    /// The request, as the scenario names it (its target, e.g. `/work?spin_us=2000`).
    pub request: String,
    /// Answers to it in the measured window.
    pub answers: u64,
    /// Median, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
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
