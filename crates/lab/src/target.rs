//! Servers under test, each its own process on a fresh port: backlog in any model, and the
//! anchors — nginx (the lab writes its config: same worker count, `reuseport` or one shared
//! socket, `return 200`, no access log), Node (`http.createServer`, one process or a cluster) when installed, and
//! hyper 1.x when the binary is built with the `hyper` feature. CPU time (user and kernel,
//! including reaped children: workers a reload replaced) and RSS are read from /proc for the
//! whole process tree.

use crate::engine::Endpoints;
use anyhow::{bail, Context};
use backlog_server::Model;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which shape a backlog target runs: a model's preset (its threads set by the plan) or a
/// fixed topology. Written in results.json as `--model`/`--topology` take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Shape {
    /// A model, with the plan's thread count.
    Preset(Model),
    /// Any shape, as given.
    Topology(backlog_server::Topology),
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shape::Preset(m) => write!(f, "{m}"),
            Shape::Topology(t) => write!(f, "{t}"),
        }
    }
}

impl std::str::FromStr for Shape {
    type Err = String;
    /// A model name, or a topology (`listeners=1 acceptors=2 readers=4 …`).
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(m) = s.parse::<backlog_server::Model>() {
            return Ok(Shape::Preset(m));
        }
        let t: backlog_server::Topology = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
        Ok(Shape::Topology(t))
    }
}

impl From<Shape> for String {
    fn from(s: Shape) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for Shape {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl Shape {
    /// The `serve` flags that start this shape with `threads` event-loop threads, or as
    /// many workers in `pool`, where it is a preset (each given only the count it takes).
    fn args(&self, threads: usize) -> Vec<String> {
        match self {
            Shape::Preset(m) => {
                let count = match m {
                    Model::Single => None,
                    Model::Pool => Some("--workers"),
                    Model::Dispatch | Model::Shared | Model::Reuseport => Some("--threads"),
                };
                let mut args = vec!["--model".into(), m.name().into()];
                if let Some(flag) = count {
                    args.extend([flag.into(), threads.to_string()]);
                }
                args
            }
            Shape::Topology(t) => vec!["--topology".into(), t.to_string()],
        }
    }
}

/// What to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// `backlog serve` in this shape, with more flags.
    Backlog {
        /// The model's preset or a topology (`model` in results written before topologies).
        #[serde(alias = "model")]
        shape: Shape,
        /// More flags (`--accept mutex`, `--balance least-conns`, …).
        extra: Vec<String>,
    },
    /// nginx with `workers` worker processes.
    Nginx {
        /// Worker processes.
        workers: usize,
        /// One listening socket per worker (`listen … reuseport`), each with its own accept
        /// queue; without it the workers share one socket and one queue, as the
        /// single-socket models do. Queue capacity differs by the worker count, so each
        /// backlog shape is compared with the nginx that has as many queues.
        #[serde(default = "reuseport_default")]
        reuseport: bool,
    },
    /// Node's http module; with `cluster`, one process per core.
    Node {
        /// Use the cluster module.
        cluster: bool,
    },
    /// hyper 1.x, a tokio current-thread runtime per thread with SO_REUSEPORT
    /// (`backlog anchor-hyper`, built with the `hyper` feature).
    Hyper,
    /// The lab's axum app on `axum::serve`, a tokio runtime of the plan's threads
    /// (`backlog anchor-axum`, built with the `axum` feature); backlog serves the same app
    /// with `--app axum`.
    Axum,
    /// The same, with TCP_NODELAY set on each connection (`backlog anchor-axum
    /// --nodelay`): without it `axum::serve` stalls on pipelined rounds (Nagle's algorithm
    /// against the client's delayed ACKs), and its CPU per request is an idle server's.
    AxumNodelay,
    /// A peer from the field serving HttpArena's endpoints (`backlog anchor-actix`,
    /// `anchor-minihttp`, built with the feature of the same name).
    Peer(Peer),
    /// The physical floor ([`crate::floor`]): reads, counts heads, writes canned answers,
    /// through epoll or io_uring (`backlog anchor-floor`).
    Floor {
        /// The I/O interface.
        io: backlog_server::Io,
    },
}

/// The field's servers the arena scenarios compare with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Peer {
    /// actix-web 4, one worker per thread.
    Actix,
    /// may-minihttp on `may`'s coroutines.
    MayMinihttp,
}

impl Peer {
    /// Its `backlog` subcommand, and the feature that builds it.
    fn command(self) -> (&'static str, &'static str) {
        match self {
            Peer::Actix => ("anchor-actix", "actix"),
            Peer::MayMinihttp => ("anchor-minihttp", "minihttp"),
        }
    }

    fn built(self) -> bool {
        match self {
            Peer::Actix => cfg!(feature = "actix"),
            Peer::MayMinihttp => cfg!(feature = "minihttp"),
        }
    }
}

/// A named server configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Label in the report.
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// The scenarios it runs in (all when empty): extra shapes and the thread sweep run the
    /// few workloads that tell them apart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<String>,
}

/// Results written before nginx had both forms ran it with `reuseport`.
fn reuseport_default() -> bool {
    true
}

impl Target {
    /// A backlog shape (a model name or a topology) with extra flags.
    ///
    /// # Panics
    /// If `shape` is neither: the lab's own targets are written in the code.
    pub fn backlog(name: &str, shape: &str, extra: &[&str]) -> Target {
        let shape = shape
            .parse()
            .unwrap_or_else(|e| panic!("lab target {name}: {e}"));
        Target::shaped(name, shape, extra)
    }

    /// A backlog shape with extra flags.
    pub fn shaped(name: &str, shape: Shape, extra: &[&str]) -> Target {
        Target {
            name: name.to_string(),
            kind: Kind::Backlog {
                shape,
                extra: extra.iter().map(|s| s.to_string()).collect(),
            },
            only: Vec::new(),
        }
    }

    /// Another server, as an anchor.
    pub fn anchor(name: &str, kind: Kind) -> Target {
        Target {
            name: name.to_string(),
            kind,
            only: Vec::new(),
        }
    }

    /// The same target, taking part in these scenarios only.
    pub fn only(mut self, scenarios: &[&str]) -> Target {
        self.only = scenarios.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Whether it is one of ours (it can serve `/work` and has an admin endpoint).
    pub fn is_backlog(&self) -> bool {
        matches!(self.kind, Kind::Backlog { .. })
    }

    /// Whether it serves `/work?spin_us=` (backlog's apps and the axum app do).
    pub fn serves_work(&self) -> bool {
        self.is_backlog() || matches!(self.kind, Kind::Axum | Kind::AxumNodelay)
    }

    /// Whether it serves `endpoints` for a load that asks for `/pipeline` alone or not.
    /// nginx answers HttpArena's `/pipeline` exactly (a static `ok`) but cannot add without
    /// a module of its own, so it takes part in the arena only where the load is
    /// `/pipeline`; Node and the axum app serve the demo only.
    pub fn serves(&self, endpoints: Endpoints, only_pipeline: bool) -> bool {
        match endpoints {
            Endpoints::Demo => self.serves_demo(),
            Endpoints::Arena => match self.kind {
                Kind::Backlog { .. } => !self.is_axum(),
                Kind::Nginx { .. } => only_pipeline,
                Kind::Node { .. } | Kind::Axum | Kind::AxumNodelay => false,
                Kind::Hyper | Kind::Floor { .. } | Kind::Peer(Peer::Actix) => true,
                // It reads bodies by Content-Length only (no chunked).
                Kind::Peer(Peer::MayMinihttp) => only_pipeline,
            },
        }
    }

    /// Whether it can serve TLS: backlog (its own apps), nginx and the hyper anchor (with
    /// tokio-rustls).
    pub fn speaks_tls(&self) -> bool {
        match self.kind {
            Kind::Backlog { .. } => !self.is_axum(),
            Kind::Nginx { .. } | Kind::Hyper => true,
            Kind::Node { .. }
            | Kind::Axum
            | Kind::AxumNodelay
            | Kind::Peer(_)
            | Kind::Floor { .. } => false,
        }
    }

    /// Whether it serves the demo's `/` (the peers serve HttpArena's endpoints only).
    pub fn serves_demo(&self) -> bool {
        !matches!(self.kind, Kind::Peer(_))
    }

    /// Whether it serves the lab's axum app (on `axum::serve` or on backlog).
    pub fn is_axum(&self) -> bool {
        match &self.kind {
            Kind::Axum | Kind::AxumNodelay => true,
            Kind::Backlog { extra, .. } => {
                extra.windows(2).any(|w| w[0] == "--app" && w[1] == "axum")
            }
            _ => false,
        }
    }

    /// The topology a backlog target runs with `threads` event-loop threads: its shape with
    /// the `--accept`/`--balance` flags it adds. `None` for the anchors.
    pub fn topology(&self, threads: usize) -> Option<backlog_server::Topology> {
        let Kind::Backlog { shape, extra } = &self.kind else {
            return None;
        };
        let flag = |name: &str| {
            extra
                .iter()
                .position(|a| a == name)
                .and_then(|i| extra.get(i + 1))
        };
        match shape {
            Shape::Topology(t) => Some(*t),
            Shape::Preset(m) => backlog_server::Topology::preset(
                *m,
                threads,
                threads,
                flag("--accept")
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(backlog_server::AcceptStrategy::Exclusive),
                flag("--balance")
                    .and_then(|b| b.parse().ok())
                    .unwrap_or(backlog_server::Balance::RoundRobin),
            )
            // A preset with no threads is no server (`None`, like an anchor's).
            .ok(),
        }
    }

    /// Processes it runs the model in (`--processes`), 1 if not given.
    pub fn processes(&self) -> usize {
        match &self.kind {
            Kind::Backlog { extra, .. } => extra
                .iter()
                .position(|a| a == "--processes")
                .and_then(|i| extra.get(i + 1))
                .and_then(|p| p.parse().ok())
                .unwrap_or(1),
            _ => 1,
        }
    }

    /// Whether the program it needs is installed.
    pub fn available(&self) -> bool {
        self.unavailable().is_none()
    }

    /// Why this target cannot run here, if it cannot.
    pub fn unavailable(&self) -> Option<&'static str> {
        let no_uring = || sys::uring::check().is_err();
        let (missing, why) = match &self.kind {
            Kind::Backlog { .. } if self.is_axum() && !cfg!(feature = "axum") => (
                true,
                "this backlog was built without the `axum` feature (cargo build --release --features axum)",
            ),
            Kind::Backlog { extra, .. } => (
                extra.windows(2).any(|w| w[0] == "--io" && w[1] == "uring") && no_uring(),
                "io_uring is not available here",
            ),
            Kind::Floor { io } => (
                *io == backlog_server::Io::Uring && no_uring(),
                "io_uring is not available here",
            ),
            Kind::Nginx { .. } => (
                !which("nginx"),
                "nginx is not installed (apt-get install nginx-light)",
            ),
            Kind::Node { .. } => (
                !which("node"),
                "node is not installed (apt-get install nodejs)",
            ),
            Kind::Hyper => (
                !cfg!(feature = "hyper"),
                "this backlog was built without the `hyper` feature (cargo build --release --features hyper)",
            ),
            Kind::Axum | Kind::AxumNodelay => (
                !cfg!(feature = "axum"),
                "this backlog was built without the `axum` feature (cargo build --release --features axum)",
            ),
            Kind::Peer(Peer::Actix) => (
                !Peer::Actix.built(),
                "this backlog was built without the `actix` feature (cargo build --release --features actix)",
            ),
            Kind::Peer(Peer::MayMinihttp) => (
                !Peer::MayMinihttp.built(),
                "this backlog was built without the `minihttp` feature (cargo build --release --features minihttp)",
            ),
        };
        missing.then_some(why)
    }
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A started server.
pub struct Running {
    child: Child,
    /// Where it serves.
    pub addr: SocketAddr,
    /// backlog's admin endpoint.
    pub admin: Option<SocketAddr>,
    dir: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// How a server is started beyond its kind.
#[derive(Debug, Clone)]
pub struct Options {
    /// Threads (or worker processes).
    pub threads: usize,
    /// The listen backlog (default: each server's own).
    pub backlog: Option<u32>,
    /// Run it inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
    /// The address it listens on (loopback, or the server host's in a pair of namespaces).
    pub host: std::net::IpAddr,
    /// Which endpoints it serves.
    pub endpoints: Endpoints,
    /// The CPUs it runs on (empty: anywhere).
    pub cpus: Vec<usize>,
    /// Serve TLS with this certificate (the targets that speak it: [`Target::speaks_tls`]).
    pub tls: Option<crate::tls::CertFiles>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            threads: 1,
            backlog: None,
            netns: None,
            host: std::net::Ipv4Addr::LOCALHOST.into(),
            endpoints: Endpoints::Demo,
            cpus: Vec::new(),
            tls: None,
        }
    }
}

/// The calling thread pinned to some CPUs until dropped, then let run where it ran before:
/// a process started meanwhile keeps the pinned set (affinity is inherited), with no window
/// in which its first threads run elsewhere.
struct Pinned(Option<Vec<usize>>);

impl Pinned {
    fn to(cpus: &[usize]) -> anyhow::Result<Pinned> {
        if cpus.is_empty() {
            return Ok(Pinned(None));
        }
        let before = sys::process::affinity().context("reading this thread's CPUs")?;
        sys::process::pin_thread(cpus).context("pinning the server's CPUs")?;
        Ok(Pinned(Some(before)))
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Some(before) = self.0.take() {
            let _ = sys::process::pin_thread(&before);
        }
    }
}

/// A command, run inside `netns` when one is given.
fn command(program: &Path, netns: Option<&str>) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Start `target` under `scratch`.
pub fn start(
    target: &Target,
    backlog_bin: &Path,
    opts: &Options,
    scratch: &Path,
) -> anyhow::Result<Running> {
    // P processes share the threads a single-process server gets: equal CPU for all.
    let threads = (opts.threads / target.processes()).max(1);
    let netns = opts.netns.as_deref();
    let dir = scratch.join(format!(
        "{}-{}",
        target.name.replace(['/', ' '], "_"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let pinned = Pinned::to(&opts.cpus)?;
    let (child, addr, admin) = match &target.kind {
        Kind::Hyper => {
            let mut cmd = command(backlog_bin, netns);
            cmd.arg("anchor-hyper");
            if let Some(tls) = &opts.tls {
                cmd.arg("--tls-cert").arg(&tls.cert);
                cmd.arg("--tls-key").arg(&tls.key);
            }
            let (child, addr) = start_anchor(&mut cmd, opts, threads, "hyper serving addr=")
                .context("starting the hyper anchor")?;
            (child, addr, None)
        }
        Kind::Axum | Kind::AxumNodelay => {
            let mut cmd = command(backlog_bin, netns);
            cmd.arg("anchor-axum");
            if target.kind == Kind::AxumNodelay {
                cmd.arg("--nodelay");
            }
            let (child, addr) = start_anchor(&mut cmd, opts, threads, "axum serving addr=")
                .context("starting the axum anchor")?;
            (child, addr, None)
        }
        Kind::Peer(peer) => {
            let (sub, name) = peer.command();
            let (child, addr) = start_anchor(
                command(backlog_bin, netns).arg(sub),
                opts,
                threads,
                &format!("{name} serving addr="),
            )
            .with_context(|| format!("starting the {name} peer"))?;
            (child, addr, None)
        }
        Kind::Floor { io } => {
            let (child, addr) = start_anchor(
                command(backlog_bin, netns).args(["anchor-floor", "--io", io.name()]),
                opts,
                threads,
                "floor serving addr=",
            )
            .context("starting the floor")?;
            (child, addr, None)
        }
        Kind::Backlog { shape, extra } => {
            let backlog: Vec<String> = opts
                .backlog
                .map(|b| vec!["--backlog".into(), b.to_string()])
                .unwrap_or_default();
            let mut child = command(backlog_bin, netns)
                .args([
                    "serve",
                    "--listen",
                    &SocketAddr::new(opts.host, 0).to_string(),
                ])
                .args(["--admin", "127.0.0.1:0"])
                .args(shape.args(threads))
                // The lab's load never reaches the database: no blocking pool.
                .args(["--blocking-threads", "0"])
                .arg("--data")
                .arg(dir.join("data"))
                .args(extra)
                .args(match opts.endpoints {
                    Endpoints::Arena => &["--app", "arena"][..],
                    Endpoints::Demo => &[],
                })
                .args(&backlog)
                .args(opts.tls.iter().flat_map(|t| {
                    [
                        "--tls-cert".as_ref(),
                        t.cert.as_os_str(),
                        "--tls-key".as_ref(),
                        t.key.as_os_str(),
                    ]
                }))
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting backlog")?;
            let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
            let (mut addr, mut admin) = (None, None);
            while addr.is_none() || admin.is_none() {
                let Some(Ok(line)) = lines.next() else {
                    bail!("backlog exited before serving");
                };
                let found = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="));
                if let Some(a) = found {
                    if line.contains("admin listening") {
                        admin = a.parse().ok();
                    } else if line.contains("backlog serving") {
                        addr = a.parse().ok();
                    }
                }
            }
            std::thread::spawn(move || for _ in lines {});
            (child, addr.context("address")?, admin)
        }
        Kind::Nginx { workers, reuseport } => {
            let port = free_port()?;
            let reuseport = if *reuseport { " reuseport" } else { "" };
            // TLS as nginx is usually run: session tickets (on by default) and a shared
            // session cache, the same certificate as everyone.
            let (ssl, tls) = match &opts.tls {
                Some(t) => (
                    " ssl",
                    format!(
                        "    ssl_certificate {};\n    ssl_certificate_key {};\n    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_cache shared:SSL:10m;\n",
                        t.cert.display(),
                        t.key.display()
                    ),
                ),
                None => ("", String::new()),
            };
            let conf = format!(
                "worker_processes {workers};\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\n\
events {{ worker_connections 16384; }}\n\
http {{\n  access_log off;\n  keepalive_requests 100000000;\n  keepalive_timeout 300s;\n  server {{\n    listen {listen}{reuseport}{ssl} backlog={backlog};\n{tls}\
    default_type text/plain;\n    location / {{ return 200 \"Hello, World!\\n\"; }}\n    location = /pipeline {{ return 200 \"ok\"; }}\n  }}\n}}\n",
                dir = dir.display(),
                listen = SocketAddr::new(opts.host, port),
                backlog = opts.backlog.unwrap_or(4096)
            );
            std::fs::write(dir.join("nginx.conf"), conf)?;
            let child = command(Path::new("nginx"), netns)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-p")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting nginx")?;
            (child, SocketAddr::new(opts.host, port), None)
        }
        Kind::Node { cluster } => {
            let port = free_port()?;
            let script = format!(
                "const http = require('http'); const cluster = require('cluster');\n\
const serve = () => http.createServer((req, res) => {{ res.writeHead(200, {{'Content-Type': 'text/plain', 'Content-Length': 14}}); res.end('Hello, World!\\n'); }}).listen({port}, '{host}', {backlog});\n\
if ({cluster} && cluster.isPrimary) {{ for (let i = 0; i < {threads}; i++) cluster.fork(); }} else {{ serve(); }}\n",
                host = opts.host,
                backlog = opts.backlog.unwrap_or(511)
            );
            std::fs::write(dir.join("server.js"), script)?;
            let child = command(Path::new("node"), netns)
                .arg(dir.join("server.js"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting node")?;
            (child, SocketAddr::new(opts.host, port), None)
        }
    };
    drop(pinned);
    let running = Running {
        child,
        addr,
        admin,
        dir,
    };
    running.wait_ready()?;
    Ok(running)
}

/// Start one of the anchors the backlog binary carries, and read where it serves from the
/// line starting with `announce` on its stderr.
fn start_anchor(
    cmd: &mut Command,
    opts: &Options,
    threads: usize,
    announce: &str,
) -> anyhow::Result<(Child, SocketAddr)> {
    let mut child = cmd
        .arg("--listen")
        .arg(SocketAddr::new(opts.host, 0).to_string())
        .args(["--threads", &threads.to_string()])
        .args(["--backlog", &opts.backlog.unwrap_or(4096).to_string()])
        .args(["--endpoints", opts.endpoints.name()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
    let addr = loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.wait();
            bail!("it exited before serving");
        };
        if let Some(rest) = line.strip_prefix(announce) {
            let a = rest.split_whitespace().next().unwrap_or_default();
            match a.parse::<SocketAddr>() {
                Ok(a) => break a,
                Err(err) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("{line:?}: {err}");
                }
            }
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok((child, addr))
}

impl Running {
    fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(self.addr).is_ok() {
                // Cluster workers come up one by one; give them a moment.
                std::thread::sleep(Duration::from_millis(200));
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("server at {} never accepted", self.addr)
    }

    /// Process id of the server (the master, for nginx and Node cluster).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's processes: itself and its children.
    pub fn pids(&self) -> Vec<u32> {
        let root = self.child.id();
        let mut out = vec![root];
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                if stat_fields(pid).and_then(|f| f.get(1).and_then(|p| p.parse::<u32>().ok()))
                    == Some(root)
                {
                    out.push(pid);
                }
            }
        }
        out
    }

    /// CPU time of every process of the server, in seconds, as (user, system) —
    /// including workers that have exited (a reload replaces them), whose time the kernel
    /// adds to their parent's once it has reaped them.
    pub fn cpu_split(&self) -> (f64, f64) {
        let root = self.child.id();
        self.pids()
            .into_iter()
            .map(|p| {
                let t = times_of(p);
                if p == root {
                    (t[0] + t[2], t[1] + t[3])
                } else {
                    (t[0], t[1])
                }
            })
            .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// Context switches of every thread of every process of the server, as (voluntary,
    /// involuntary): a thread that blocks with nothing to do switches voluntarily; one that
    /// the scheduler takes off a core (more threads than cores) involuntarily.
    pub fn context_switches(&self) -> (u64, u64) {
        let mut out = (0, 0);
        for pid in self.pids() {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.flatten() {
                let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
                    continue;
                };
                for line in status.lines() {
                    let field = |name: &str| {
                        line.strip_prefix(name)
                            .and_then(|v| v.trim().parse::<u64>().ok())
                    };
                    if let Some(v) = field("voluntary_ctxt_switches:") {
                        out.0 += v;
                    } else if let Some(v) = field("nonvoluntary_ctxt_switches:") {
                        out.1 += v;
                    }
                }
            }
        }
        out
    }

    /// Resident memory of every process of the server, KiB.
    pub fn rss_kib(&self) -> u64 {
        self.pids()
            .iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
            .filter_map(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .sum()
    }

    /// Stop it (SIGTERM, then SIGKILL after 5 s) and remove its scratch directory.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Fields of /proc/PID/stat after the command name: [0] state, [1] ppid, … [11] utime,
/// [12] stime.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// CPU seconds this process (the lab, i.e. the load generator) has used.
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds_of(std::process::id())
}

/// utime, stime, cutime, cstime of process `pid` in seconds (zeros if it is gone).
fn times_of(pid: u32) -> [f64; 4] {
    let tick = 100.0; // USER_HZ on Linux
    let mut out = [0.0; 4];
    if let Some(f) = stat_fields(pid) {
        for (i, v) in out.iter_mut().enumerate() {
            *v = f.get(11 + i).and_then(|v| v.parse().ok()).unwrap_or(0.0) / tick;
        }
    }
    out
}

/// User + system CPU seconds of process `pid` (0 if it is gone).
fn cpu_seconds_of(pid: u32) -> f64 {
    let t = times_of(pid);
    t[0] + t[1]
}

/// Fetch backlog's `/debug/state` from its admin endpoint.
pub fn admin_state(admin: SocketAddr) -> Option<admin::State> {
    admin::fetch_state(admin, Duration::from_millis(500)).ok()
}
