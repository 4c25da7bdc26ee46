//! The lab's load generator: N threads, each an epoll loop over its share of connections.
//!
//! Leaner than wrk on purpose (the servers it measures run on the same two cores): one
//! buffer per connection, responses framed by Content-Length with httparse, latencies in an
//! HdrHistogram. Two paces: closed-loop (a connection sends as soon as its answers are in)
//! and fixed-rate without coordinated omission (each request has an intended send time and
//! its latency counts from then, as wrk2 does, so a stalled server is charged for the
//! requests it delayed). Connections are kept alive, pipelined D deep, or replaced after
//! every request (churn). Every run is bounded by its duration. With a TLS client
//! configuration every connection speaks TLS through rustls (a churned connection then costs
//! the server a handshake, full or resumed as the configuration allows), and a request's
//! latency includes its connection's handshake.

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use std::sync::Arc;

use hdrhistogram::Histogram;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use sys::{Epoll, Events, Interest};

/// When requests are sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as the answers come back.
    Closed,
    /// This many requests per second in total, spread evenly over connections.
    Rate(f64),
    /// Churn in bursts: every connection that closed opens again at the next tick of this
    /// period, all at once (a storm of new connections, then quiet).
    Bursts(Duration),
}

/// What happens to a connection after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Kept open for the next request.
    KeepAlive,
    /// Closed; the next request opens a new connection.
    Churn,
    /// Kept open for this many answers, then closed by the client and replaced.
    Limited(u32),
}

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Target.
    pub addr: SocketAddr,
    /// Connections open at once.
    pub connections: usize,
    /// Client threads.
    pub threads: usize,
    /// Measured time (after warm-up).
    pub duration: Duration,
    /// Unmeasured time first.
    pub warmup: Duration,
    /// Pace.
    pub pace: Pace,
    /// Connection reuse.
    pub reuse: Reuse,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Raw requests with weights, picked at random per request.
    pub requests: Vec<(u32, Vec<u8>)>,
    /// A request unanswered this long counts as a timeout and its connection is replaced.
    pub timeout: Duration,
    /// The CPUs its threads run on (empty: wherever the kernel puts them).
    pub cpus: Vec<usize>,
    /// Speak TLS with this client configuration (the server's name is `localhost`).
    pub tls: Option<Arc<ClientConfig>>,
    /// Nice levels its threads lower themselves by (0: none): traffic beside the measured
    /// clients yields the client cores to them, so their latencies measure the server and
    /// not the load generator's own contention.
    pub nice: i32,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Responses received in the measured window.
    pub requests: u64,
    /// Errors by kind: connect_refused, connect_timeout, connect_pending (a handshake still
    /// unanswered after 1 s at the end), reset, timeout, status_NNN, connect_error.
    pub errors: BTreeMap<String, u64>,
    /// Latency in microseconds.
    pub latency: Histogram<u64>,
    /// The same, for each of the load's requests (in `LoadSpec::requests` order): in a mix,
    /// whether fast requests wait behind slow ones shows in theirs alone.
    pub latency_by_request: Vec<Histogram<u64>>,
    /// The measured window.
    pub elapsed: Duration,
}

/// Microseconds, 1 µs to a minute, three significant digits.
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

impl LoadResult {
    fn empty() -> LoadResult {
        LoadResult {
            requests: 0,
            errors: BTreeMap::new(),
            latency: latency_histogram(),
            latency_by_request: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    fn merge(&mut self, other: LoadResult) {
        self.requests += other.requests;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_insert(0) += v;
        }
        let _ = self.latency.add(&other.latency);
        if self.latency_by_request.len() < other.latency_by_request.len() {
            self.latency_by_request
                .resize_with(other.latency_by_request.len(), latency_histogram);
        }
        for (mine, theirs) in self
            .latency_by_request
            .iter_mut()
            .zip(&other.latency_by_request)
        {
            let _ = mine.add(theirs);
        }
        self.elapsed = self.elapsed.max(other.elapsed);
    }

    /// Requests per second over the measured window.
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Total errors.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Run `spec` until its duration ends or `stop` is set.
pub fn run(spec: &LoadSpec, stop: &AtomicBool) -> LoadResult {
    let threads = spec.threads.clamp(1, spec.connections.max(1));
    let mut total = LoadResult::empty();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mut mine = spec.clone();
                mine.connections =
                    spec.connections / threads + usize::from(t < spec.connections % threads);
                if let Pace::Rate(r) = spec.pace {
                    mine.pace = Pace::Rate(r * mine.connections as f64 / spec.connections as f64);
                }
                std::thread::Builder::new()
                    .name(format!("load-{t}"))
                    .spawn_scoped(scope, move || {
                        if !mine.cpus.is_empty() {
                            // Best effort: an unpinned client still measures, only noisier.
                            let _ = sys::process::pin_thread(&mine.cpus);
                        }
                        if mine.nice > 0 {
                            let _ = sys::process::lower_thread_priority(mine.nice);
                        }
                        Worker::new(&mine, t as u64).run(&mine, stop)
                    })
                    .expect("spawning a load thread")
            })
            .collect();
        for h in handles {
            if let Ok(r) = h.join() {
                total.merge(r);
            }
        }
    });
    total
}

struct Conn {
    sock: Option<Socket>,
    /// The connection's TLS, when the run speaks it: requests go in as plaintext, records
    /// go out through the socket.
    tls: Option<ClientConnection>,
    connected: bool,
    out: Vec<u8>,
    inbuf: Vec<u8>,
    /// Send (or intended send) time of each request in flight.
    /// Each request in flight: when it was due (or sent) and which of the load's it is.
    sent: VecDeque<(Instant, usize)>,
    /// Rate mode: when the next request is due.
    next_due: Instant,
    /// When the current connect began.
    opened: Instant,
    /// Answers on the current connection.
    answered: u32,
}

struct Worker {
    epoll: Epoll,
    conns: Vec<Conn>,
    /// Connections closed since the last round, to reopen.
    reopen: Vec<usize>,
    ready: Vec<(u64, bool, bool)>,
    rng: u64,
    interval: Option<Duration>,
    result: LoadResult,
    measuring_from: Instant,
    weights: u32,
    /// `Pace::Bursts`: when closed connections open again.
    next_burst: Option<Instant>,
}

impl Worker {
    fn new(spec: &LoadSpec, seed: u64) -> Worker {
        let now = Instant::now();
        let interval = match spec.pace {
            Pace::Rate(r) if r > 0.0 && spec.connections > 0 => {
                Some(Duration::from_secs_f64(spec.connections as f64 / r))
            }
            _ => None,
        };
        let mut w = Worker {
            epoll: Epoll::new().expect("epoll"),
            conns: Vec::new(),
            reopen: Vec::new(),
            ready: Vec::new(),
            rng: 0x9E37_79B9_7F4A_7C15 ^ (seed + 1).wrapping_mul(0x2545_F491_4F6C_DD1D),
            interval,
            result: LoadResult {
                latency_by_request: spec.requests.iter().map(|_| latency_histogram()).collect(),
                ..LoadResult::empty()
            },
            measuring_from: now + spec.warmup,
            weights: spec.requests.iter().map(|(w, _)| *w).sum::<u32>().max(1),
            next_burst: match spec.pace {
                Pace::Bursts(every) => Some(now + every),
                _ => None,
            },
        };
        for i in 0..spec.connections {
            // Spread the first intended send times over one interval.
            let offset = interval.map_or(Duration::ZERO, |iv| {
                iv.mul_f64(i as f64 / spec.connections.max(1) as f64)
            });
            w.conns.push(Conn {
                sock: None,
                tls: None,
                connected: false,
                out: Vec::with_capacity(1024),
                inbuf: Vec::with_capacity(4096),
                sent: VecDeque::new(),
                next_due: now + offset,
                opened: now,
                answered: 0,
            });
            w.open(spec, i);
        }
        w
    }

    fn error(&mut self, kind: &str) {
        if Instant::now() >= self.measuring_from {
            *self.result.errors.entry(kind.to_string()).or_insert(0) += 1;
        }
    }

    fn open(&mut self, spec: &LoadSpec, i: usize) {
        let sock = match Socket::new(
            Domain::for_address(spec.addr),
            Type::STREAM,
            Some(Protocol::TCP),
        ) {
            Ok(s) => s,
            Err(_) => {
                self.error("connect_error");
                self.reopen.push(i);
                return;
            }
        };
        let _ = sock.set_nonblocking(true);
        let _ = sock.set_tcp_nodelay(true);
        match sock.connect(&SockAddr::from(spec.addr)) {
            Ok(()) => {}
            Err(e) if sys::in_progress(&e) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                self.error("connect_refused");
                return;
            }
            Err(_) => {
                self.error("connect_error");
                return;
            }
        }
        if self
            .epoll
            .add(&sock, i as u64, Interest::Connection)
            .is_err()
        {
            self.error("connect_error");
            return;
        }
        let tls = match &spec.tls {
            Some(cfg) => {
                let name = ServerName::try_from("localhost").expect("a server name");
                match ClientConnection::new(cfg.clone(), name) {
                    Ok(t) => Some(t),
                    Err(_) => {
                        self.error("tls_error");
                        return;
                    }
                }
            }
            None => None,
        };
        let c = &mut self.conns[i];
        c.sock = Some(sock);
        c.tls = tls;
        c.connected = false;
        c.opened = Instant::now();
        c.answered = 0;
        c.inbuf.clear();
        c.out.clear();
        c.sent.clear();
    }

    /// The connection is done (churned, or it failed): a new one in its place, now, or at
    /// the next tick under [`Pace::Bursts`].
    fn replace(&mut self, spec: &LoadSpec, i: usize) {
        self.close(i);
        if self.next_burst.is_none() {
            self.open(spec, i);
        }
    }

    fn close(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if let Some(s) = c.sock.take() {
            let _ = self.epoll.delete(&s);
            self.reopen.push(i);
        }
        c.tls = None;
        c.sent.clear();
        c.inbuf.clear();
        c.out.clear();
        c.connected = false;
    }

    fn pick(&mut self, spec: &LoadSpec) -> usize {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let mut r = (x % self.weights as u64) as u32;
        for (i, (w, _)) in spec.requests.iter().enumerate() {
            if r < *w {
                return i;
            }
            r -= w;
        }
        0
    }

    /// Queue requests that may be sent now, then write.
    fn fill(&mut self, spec: &LoadSpec, i: usize, now: Instant) {
        if !self.conns[i].connected {
            return;
        }
        let batch = match spec.reuse {
            Reuse::Churn | Reuse::Limited(_) => 1,
            Reuse::KeepAlive => spec.pipeline.max(1),
        };
        match self.interval {
            // Closed loop: a new batch once the last one is answered.
            None => {
                if self.conns[i].sent.is_empty() {
                    for _ in 0..batch {
                        self.queue(spec, i, now);
                    }
                }
            }
            // Fixed rate: every request that is due, stamped with when it was due.
            Some(iv) => {
                // In flight at once on one connection: one on a connection per request; no
                // more than its remaining answers on one that closes after n (what is due
                // meanwhile waits for the next connection, its latency counted from when it
                // was due).
                let cap = match spec.reuse {
                    Reuse::Churn => 1,
                    Reuse::Limited(n) => {
                        (n.saturating_sub(self.conns[i].answered) as usize).min(batch.max(64))
                    }
                    Reuse::KeepAlive => batch.max(64),
                };
                while self.conns[i].next_due <= now && self.conns[i].sent.len() < cap {
                    let due = self.conns[i].next_due;
                    self.conns[i].next_due = due + iv;
                    self.queue(spec, i, due);
                }
            }
        }
        self.flush(i);
    }

    fn queue(&mut self, spec: &LoadSpec, i: usize, stamp: Instant) {
        let which = self.pick(spec);
        let c = &mut self.conns[i];
        c.out.extend_from_slice(&spec.requests[which].1);
        c.sent.push_back((stamp, which));
    }

    fn flush(&mut self, i: usize) {
        let c = &mut self.conns[i];
        let Some(sock) = c.sock.as_mut() else { return };
        if let Some(tls) = c.tls.as_mut() {
            // Plaintext goes into the session (held there until the handshake is done);
            // what leaves is records.
            if !c.out.is_empty() {
                let _ = tls.writer().write_all(&c.out);
                c.out.clear();
            }
            while tls.wants_write() {
                match tls.write_tls(sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(_) => {
                        self.error("reset");
                        self.close(i);
                        return;
                    }
                }
            }
            return;
        }
        while !c.out.is_empty() {
            match sock.write(&c.out) {
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.error("reset");
                    self.close(i);
                    return;
                }
            }
        }
    }

    /// TLS: take what the socket holds through the session into `inbuf`, and send what the
    /// session has to say back (handshake messages). `false`: the connection ended.
    fn read_tls(&mut self, spec: &LoadSpec, i: usize) -> bool {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let c = &mut self.conns[i];
            let (Some(sock), Some(tls)) = (c.sock.as_mut(), c.tls.as_mut()) else {
                return false;
            };
            let ended = match tls.read_tls(sock) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => true,
            };
            if !ended && tls.process_new_packets().is_err() {
                self.error("tls_error");
                self.replace(spec, i);
                return false;
            }
            loop {
                match tls.reader().read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => c.inbuf.extend_from_slice(&buf[..n]),
                    Err(_) => break,
                }
            }
            if ended {
                if !c.sent.is_empty() {
                    self.error("reset");
                }
                self.replace(spec, i);
                return false;
            }
        }
        self.flush(i);
        self.conns[i].sock.is_some()
    }

    fn read(&mut self, spec: &LoadSpec, i: usize, now: Instant) {
        if self.conns[i].tls.is_some() {
            if !self.read_tls(spec, i) {
                return;
            }
            return self.frame(spec, i, now);
        }
        let mut buf = [0u8; 16 * 1024];
        loop {
            let Some(sock) = self.conns[i].sock.as_mut() else {
                return;
            };
            match sock.read(&mut buf) {
                Ok(0) => {
                    if !self.conns[i].sent.is_empty() {
                        self.error("reset");
                    }
                    self.replace(spec, i);
                    return;
                }
                Ok(n) => {
                    self.conns[i].inbuf.extend_from_slice(&buf[..n]);
                    // Edge-triggered: a short read drained the socket; the next edge
                    // brings the rest. Saves the extra read that would say EAGAIN.
                    if n < buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.error("reset");
                    self.replace(spec, i);
                    return;
                }
            }
        }
        self.frame(spec, i, now);
    }

    /// Take every complete response off the connection's input.
    fn frame(&mut self, spec: &LoadSpec, i: usize, now: Instant) {
        loop {
            let c = &mut self.conns[i];
            let mut headers = [httparse::EMPTY_HEADER; 24];
            let mut resp = httparse::Response::new(&mut headers);
            let head = match resp.parse(&c.inbuf) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => break,
                Err(_) => {
                    self.error("bad_response");
                    self.replace(spec, i);
                    return;
                }
            };
            let status = resp.code.unwrap_or(0);
            let len: usize = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .unwrap_or(0);
            if status == 100 {
                c.inbuf.drain(..head);
                continue;
            }
            if c.inbuf.len() < head + len {
                break;
            }
            c.inbuf.drain(..head + len);
            let sent = c.sent.pop_front();
            if let Some((t, which)) = sent {
                if t >= self.measuring_from {
                    let us = now.saturating_duration_since(t).as_micros().max(1) as u64;
                    let _ = self.result.latency.record(us);
                    if let Some(h) = self.result.latency_by_request.get_mut(which) {
                        let _ = h.record(us);
                    }
                    self.result.requests += 1;
                    if status != 200 && status != 201 {
                        *self
                            .result
                            .errors
                            .entry(format!("status_{status}"))
                            .or_insert(0) += 1;
                    }
                }
            }
            let done = match spec.reuse {
                Reuse::Churn => true,
                Reuse::Limited(n) => {
                    self.conns[i].answered += 1;
                    self.conns[i].answered >= n
                }
                Reuse::KeepAlive => false,
            };
            if done {
                self.replace(spec, i);
                return;
            }
        }
    }

    /// Take in one wait's events: connects that finished, bytes to read, room to write.
    fn handle(&mut self, spec: &LoadSpec, events: &Events, now: Instant) {
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.extend(events.iter().map(|(t, r)| (t, r.readable(), r.writable())));
        for &(token, readable, writable) in &ready {
            let i = token as usize;
            if i >= self.conns.len() || self.conns[i].sock.is_none() {
                continue;
            }
            if writable && !self.conns[i].connected {
                let err = self.conns[i]
                    .sock
                    .as_ref()
                    .and_then(|s| s.take_error().ok().flatten());
                if let Some(e) = err {
                    let kind = if e.kind() == io::ErrorKind::ConnectionRefused {
                        "connect_refused"
                    } else {
                        "connect_error"
                    };
                    self.error(kind);
                    self.close(i);
                    continue;
                }
                self.conns[i].connected = true;
                self.fill(spec, i, now);
            }
            if writable {
                self.flush(i);
            }
            if readable {
                self.read(spec, i, now);
                self.fill(spec, i, now);
            }
        }
        self.ready = ready;
    }

    fn run(mut self, spec: &LoadSpec, stop: &AtomicBool) -> LoadResult {
        let end = self.measuring_from + spec.duration;
        let mut events = Events::with_capacity(1024);
        let mut last_sweep = Instant::now();
        loop {
            let now = Instant::now();
            if now >= end || stop.load(Ordering::Relaxed) {
                break;
            }
            // Bursts: what closed waits for the next tick, then opens all at once.
            if let (Some(at), Pace::Bursts(every)) = (self.next_burst, spec.pace) {
                if now < at {
                    let wait = at
                        .saturating_duration_since(now)
                        .min(Duration::from_millis(10));
                    if self.epoll.wait(&mut events, Some(wait)).is_err() {
                        break;
                    }
                    self.handle(spec, &events, Instant::now());
                    continue;
                }
                self.next_burst = Some(at + every);
            }
            // Reopen what closed (a refused connect is retried on the next round).
            let mut reopen = std::mem::take(&mut self.reopen);
            for &i in &reopen {
                if self.conns[i].sock.is_none() {
                    self.open(spec, i);
                }
            }
            reopen.clear();
            self.reopen = reopen;
            // Fixed rate: every connection may have a request due.
            if self.interval.is_some() {
                for i in 0..self.conns.len() {
                    self.fill(spec, i, now);
                }
            }
            let wait = if self.interval.is_some() {
                Duration::from_micros(500)
            } else {
                Duration::from_millis(10)
            };
            if self.epoll.wait(&mut events, Some(wait)).is_err() {
                break;
            }
            let now = Instant::now();
            self.handle(spec, &events, now);
            if now.duration_since(last_sweep) > Duration::from_millis(100) {
                last_sweep = now;
                for i in 0..self.conns.len() {
                    let stale = self.conns[i]
                        .sent
                        .front()
                        .is_some_and(|(t, _)| now.saturating_duration_since(*t) > spec.timeout);
                    if stale {
                        self.error("timeout");
                        self.close(i);
                    }
                    let c = &self.conns[i];
                    if c.sock.is_some()
                        && !c.connected
                        && now.saturating_duration_since(c.opened) > spec.timeout
                    {
                        self.error("connect_timeout");
                        self.close(i);
                    }
                }
            }
        }
        // Handshakes still unanswered at the end (a dropped SYN waits for its 1 s, 3 s, 7 s
        // retransmits) are failures the window saw, not silence.
        let now = Instant::now();
        let pending = self
            .conns
            .iter()
            .filter(|c| {
                c.sock.is_some()
                    && !c.connected
                    && now.saturating_duration_since(c.opened) > Duration::from_secs(1)
            })
            .count();
        for _ in 0..pending {
            self.error("connect_pending");
        }
        self.result.elapsed = Instant::now()
            .saturating_duration_since(self.measuring_from)
            .min(spec.duration)
            .max(Duration::from_millis(1));
        self.result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backlog_server::{Model, Request, Response, Router, Server};

    fn serve() -> Server {
        Server::builder()
            .listen("127.0.0.1:0".parse().unwrap())
            .model(Model::Single)
            .bind(Router::new().get("/", |_r: Request| Response::text(200, "ok\n")))
            .unwrap()
    }

    fn spec(addr: SocketAddr, reuse: Reuse, pipeline: usize, path: &str) -> LoadSpec {
        LoadSpec {
            addr,
            connections: 4,
            threads: 2,
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(50),
            pace: Pace::Closed,
            reuse,
            pipeline,
            requests: vec![(
                1,
                format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes(),
            )],
            timeout: Duration::from_secs(2),
            cpus: Vec::new(),
            tls: None,
            nice: 0,
        }
    }

    #[test]
    fn every_mode_gets_answers_and_no_errors_from_a_real_server() {
        let server = serve();
        let stop = AtomicBool::new(false);
        for (reuse, pipeline) in [
            (Reuse::KeepAlive, 1),
            (Reuse::KeepAlive, 8),
            (Reuse::Churn, 1),
        ] {
            let r = run(&spec(server.local_addr(), reuse, pipeline, "/"), &stop);
            assert!(r.requests > 0, "{reuse:?}/{pipeline}: nothing answered");
            assert_eq!(r.error_count(), 0, "{reuse:?}/{pipeline}: {:?}", r.errors);
            assert_eq!(r.latency.len(), r.requests, "one latency per answer");
        }
        server.stop();
    }

    /// In a mix, each answer's latency is also counted for the request it answers, so the
    /// fast requests' tail can be told from the slow ones'.
    #[test]
    fn a_mix_counts_each_requests_latency_apart() {
        let server = Server::builder()
            .listen("127.0.0.1:0".parse().unwrap())
            .model(Model::Single)
            .bind(
                Router::new()
                    .get("/", |_r: Request| Response::text(200, "ok\n"))
                    .get("/slow", |_r: Request| {
                        std::thread::sleep(Duration::from_millis(2));
                        Response::text(200, "slow\n")
                    }),
            )
            .unwrap();
        let stop = AtomicBool::new(false);
        let mut s = spec(server.local_addr(), Reuse::KeepAlive, 1, "/");
        s.requests
            .push((1, b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n".to_vec()));
        let r = run(&s, &stop);
        server.stop();
        assert_eq!(r.error_count(), 0, "{:?}", r.errors);
        let [fast, slow] = &r.latency_by_request[..] else {
            panic!("{} histograms", r.latency_by_request.len());
        };
        assert!(!fast.is_empty() && !slow.is_empty(), "both were answered");
        assert_eq!(
            fast.len() + slow.len(),
            r.requests,
            "one latency per answer"
        );
        assert!(
            slow.value_at_quantile(0.5) >= 2_000,
            "the slow request's own: {}",
            slow.value_at_quantile(0.5)
        );
    }

    #[test]
    fn every_mode_speaks_tls_to_a_real_server_full_and_resumed() {
        let dir = testkit::scratch("backlog-lab-tls-");
        let tls = crate::tls::LabTls::new(dir.path()).unwrap();
        let server = Server::builder()
            .listen("127.0.0.1:0".parse().unwrap())
            .model(Model::Single)
            .tls(backlog_server::Tls::from_pem_files(&tls.files.cert, &tls.files.key).unwrap())
            .bind(Router::new().get("/", |_r: Request| Response::text(200, "ok\n")))
            .unwrap();
        let stop = AtomicBool::new(false);
        for (reuse, pipeline, resume) in [
            (Reuse::KeepAlive, 1, true),
            (Reuse::KeepAlive, 8, true),
            (Reuse::Churn, 1, false),
            (Reuse::Churn, 1, true),
        ] {
            let mut s = spec(server.local_addr(), reuse, pipeline, "/");
            s.tls = Some(tls.client(resume));
            let before = server.stats().snapshot();
            let r = run(&s, &stop);
            assert!(r.requests > 0, "{reuse:?}/{pipeline}: nothing answered");
            assert_eq!(r.error_count(), 0, "{reuse:?}/{pipeline}: {:?}", r.errors);
            let after = server.stats().snapshot();
            let count = |snap: &[backlog_server::stats::ThreadSnapshot], full: bool| -> u64 {
                snap.iter()
                    .map(|t| {
                        if full {
                            t.tls.full.count()
                        } else {
                            t.tls.resumed.count()
                        }
                    })
                    .sum()
            };
            let full = count(&after, true) - count(&before, true);
            let resumed = count(&after, false) - count(&before, false);
            if reuse == Reuse::Churn {
                assert!(full + resumed >= r.requests, "a handshake per request");
                if resume {
                    assert!(resumed > full, "resuming: {full} full, {resumed} resumed");
                } else {
                    assert_eq!(resumed, 0, "full handshakes only");
                }
            }
        }
        server.stop();
    }

    #[test]
    fn errors_are_counted_by_kind() {
        let server = serve();
        let stop = AtomicBool::new(false);
        let r = run(
            &spec(server.local_addr(), Reuse::KeepAlive, 1, "/none"),
            &stop,
        );
        assert!(
            r.errors.get("status_404").copied().unwrap_or(0) > 0,
            "{:?}",
            r.errors
        );
        server.stop();

        // A port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let r = run(&spec(port, Reuse::KeepAlive, 1, "/"), &stop);
        assert_eq!(r.requests, 0);
        assert!(
            r.errors.get("connect_refused").copied().unwrap_or(0) > 0,
            "{:?}",
            r.errors
        );
    }

    #[test]
    fn bursts_open_their_connections_together_once_per_tick() {
        let server = serve();
        let stop = AtomicBool::new(false);
        let mut s = spec(server.local_addr(), Reuse::Churn, 1, "/");
        s.connections = 8;
        s.threads = 1;
        s.warmup = Duration::ZERO;
        s.duration = Duration::from_millis(1000);
        s.pace = Pace::Bursts(Duration::from_millis(200));
        let r = run(&s, &stop);
        // The first burst at start and one per tick after: about 5 × 8, never a closed
        // loop's thousands.
        assert!(
            (24..=56).contains(&r.requests),
            "{} answers in bursts of 8 every 200 ms",
            r.requests
        );
        assert_eq!(r.error_count(), 0, "{:?}", r.errors);
        server.stop();
    }

    /// At a fixed rate, a connection that closes after n answers is never sent more than n:
    /// what falls due meanwhile goes on the next connection.
    #[test]
    fn a_fixed_rate_sends_no_more_than_n_on_a_connection_closed_after_n() {
        let server = serve();
        let stop = AtomicBool::new(false);
        let mut s = spec(server.local_addr(), Reuse::Limited(3), 1, "/");
        s.pace = Pace::Rate(20_000.0);
        s.duration = Duration::from_millis(500);
        let r = run(&s, &stop);
        assert!(r.requests > 100, "{} answers", r.requests);
        assert_eq!(r.error_count(), 0, "{:?}", r.errors);
        let stats = server.stop();
        let snap = stats.snapshot();
        let accepted: u64 = snap.iter().map(|t| t.accepted).sum();
        let served: u64 = snap.iter().map(|t| t.requests).sum();
        assert!(
            served <= 3 * accepted,
            "{served} requests on {accepted} connections"
        );
    }

    #[test]
    fn a_fixed_rate_is_not_exceeded() {
        let server = serve();
        let stop = AtomicBool::new(false);
        let mut s = spec(server.local_addr(), Reuse::KeepAlive, 1, "/");
        s.pace = Pace::Rate(200.0);
        s.duration = Duration::from_secs(1);
        let r = run(&s, &stop);
        // A closed loop here answers tens of thousands; the pacer sends about 200.
        assert!(r.requests <= 260, "{} requests at 200/s", r.requests);
        assert!(r.requests > 0);
        server.stop();
    }
}
