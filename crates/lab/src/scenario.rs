//! What a scenario is: its load (connections, keep-alive or churn, pipelining, a request
//! mix, a fixed rate) and the hostile traffic beside it (slowloris, readers that never read,
//! accept storms, SYN floods, reloads), and which targets take part.

use crate::netns;
use crate::target::{self, Target};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::TcpStream;
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
    /// Keep-alive, but the client closes each connection after this many answers and opens
    /// another (HttpArena's `limited-conn`).
    #[serde(default)]
    pub per_connection: Option<u32>,
    /// Paths with weights.
    pub mix: Vec<(u32, String)>,
    /// Whole requests with weights, sent as written, in place of `mix` when there are any
    /// (HttpArena's POSTs with Content-Length and chunked bodies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub raw: Vec<(u32, String)>,
    /// Which endpoints the servers serve (HttpArena's, or the demo's `/`).
    #[serde(default)]
    pub endpoints: crate::engine::Endpoints,
    /// The backlog targets (by name) that take part; empty: every one. The anchors take
    /// part wherever they serve the endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shapes: Vec<String>,
    /// Only servers with `/work` can serve it (backlog's apps, the axum app).
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
    /// The load speaks TLS, every connection's handshake full or resumed; only servers that
    /// speak TLS take part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsLoad>,
    /// A handshake storm beside the measured clients: bursts, every 250 ms, of this many new
    /// connections, each a full TLS handshake and one request.
    #[serde(default)]
    pub storm: usize,
}

/// How a TLS scenario's connections shake hands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsLoad {
    /// Every connection a full handshake (the client keeps no session).
    Full,
    /// Connections resume the session of an earlier one (tickets) where they can.
    Resumed,
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
    /// Whether the report plots queue waits over time for it: the storm (the accept queue)
    /// and the mixed load (head-of-line blocking in the receive queue).
    pub fn plots_waits(&self) -> bool {
        self.burst > 0 || self.name == "mixed"
    }

    /// Whether target `t` runs in this scenario: a target limited to some scenarios runs in
    /// those; `/work` needs backlog; reloads need a server that reloads in place; HttpArena's
    /// endpoints need a server that has them.
    pub fn includes(&self, t: &Target) -> bool {
        if !t.only.is_empty() && !t.only.contains(&self.name) {
            return false;
        }
        if t.is_backlog() && !self.shapes.is_empty() && !self.shapes.contains(&t.name) {
            return false;
        }
        let only_pipeline = self.raw.is_empty() && self.mix.iter().all(|(_, p)| p == "/pipeline");
        if !t.serves(self.endpoints, only_pipeline) {
            return false;
        }
        if self.backlog_only && !t.serves_work() {
            return false;
        }
        if self.reload_every.is_some() {
            return matches!(t.kind, target::Kind::Nginx { .. }) || t.processes() > 1;
        }
        if self.tls.is_some() {
            return t.speaks_tls();
        }
        true
    }

    /// The requests the load sends, with weights.
    pub fn requests(&self) -> Vec<(u32, Vec<u8>)> {
        if self.raw.is_empty() {
            self.mix.iter().map(|(w, p)| (*w, request(p))).collect()
        } else {
            self.raw
                .iter()
                .map(|(w, r)| (*w, r.as_bytes().to_vec()))
                .collect()
        }
    }

    /// What each of [`Scenario::requests`] is called in a report: its target, or a raw
    /// request's first line without its version.
    pub fn request_names(&self) -> Vec<String> {
        if self.raw.is_empty() {
            self.mix.iter().map(|(_, p)| p.clone()).collect()
        } else {
            self.raw
                .iter()
                .map(|(_, r)| {
                    let line = r.lines().next().unwrap_or_default();
                    line.strip_suffix(" HTTP/1.1").unwrap_or(line).to_string()
                })
                .collect()
        }
    }

    /// The same workload at a fixed `rate` (requests/s), as `name`: latency counts from
    /// each request's intended send time, and the load generator is not saturated.
    pub(crate) fn at_rate(&self, name: &str, about: &str, rate: f64) -> Scenario {
        Scenario {
            name: name.into(),
            about: about.into(),
            rate: Some(rate),
            ..self.clone()
        }
    }

    pub(crate) fn new(name: &str, about: &str, connections: usize) -> Scenario {
        Scenario {
            name: name.into(),
            about: about.into(),
            connections,
            pipeline: 1,
            churn: false,
            per_connection: None,
            mix: vec![(1, "/".into())],
            raw: Vec::new(),
            endpoints: crate::engine::Endpoints::Demo,
            shapes: Vec::new(),
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
            tls: None,
            storm: 0,
        }
    }
}

/// Connections that pipeline thousands of requests, never read an answer, and keep
/// offering more as the server takes them: answers pile up in the server's output until
/// it stops reading them (or cuts them at its write timeout).
pub(crate) fn never_read(addr: std::net::SocketAddr, n: usize, until: Instant) {
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
pub(crate) fn bursts(addr: std::net::SocketAddr, n: usize, until: Instant) {
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
pub(crate) fn syn_flood(addr: std::net::SocketAddr, per_second: u32, until: Instant) {
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
pub(crate) fn trickle(addr: std::net::SocketAddr, n: usize, until: Instant) {
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

/// A GET of `path`, as the load sends it.
pub(crate) fn request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: lab\r\n\r\n").into_bytes()
}
