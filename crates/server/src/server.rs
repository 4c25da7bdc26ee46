//! The public face: a builder, a running server, and a handle to stop it.

use crate::app::handler::Handler;
use crate::app::refusal::{Refusal, RenderRefusal};
use crate::app::service::{HttpBody, HttpService, PeerAddrs, Tower};
use crate::app::App;
use crate::config::PresetKnobs;
use crate::introspect::Introspect;
use crate::observe::stats::StatsRegistry;
use crate::roles::listener::{effective_backlog, Listener};
use crate::shape::topology::{ThreadLayout, Topology};
use crate::shutdown::Shutdown;
use crate::tls::Tls;
use crate::wiring::{self, Wiring};
use crate::{
    AcceptStrategy, Balance, BusinessPriority, Config, InlineAnswers, Io, Model, QueueTiming,
};
use h1::{Limits, Response};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use crate::error::ServerError;

/// Check that the I/O interface asked for can be had here (each loop makes its own ring,
/// on its own thread; this one only proves the kernel allows it), and choose for `auto`.
fn resolve_io(io: Io) -> Result<Io, ServerError> {
    match io {
        Io::Epoll => Ok(Io::Epoll),
        Io::Uring => {
            sys::uring::check().map_err(ServerError::Uring)?;
            Ok(Io::Uring)
        }
        Io::Auto => match sys::uring::check() {
            Ok(_) => {
                tracing::info!(io = "uring", "--io auto chose io_uring");
                Ok(Io::Uring)
            }
            Err(err) => {
                tracing::info!(io = "epoll", reason = %err, "--io auto chose epoll");
                Ok(Io::Epoll)
            }
        },
    }
}

/// Builds a [`Server`]:
///
/// ```no_run
/// use backlog_server::{Model, Server};
/// use h1::{Request, Response};
///
/// let server = Server::builder()
///     .listen("127.0.0.1:8080".parse().unwrap())
///     .model(Model::Dispatch)
///     .threads(4)
///     .bind(|_req: Request| Response::text(200, "Hello, World!\n"))
///     .expect("bind");
/// server.wait();
/// ```
#[derive(Debug, Clone, Default)]
pub struct ServerBuilder {
    cfg: Config,
    /// The model and its knobs, from which `cfg.topology` is made until a topology is
    /// given whole.
    preset: PresetKnobs,
    inherited: Vec<Arc<Listener>>,
    refusals: Option<RenderRefusal>,
    tls: Option<Arc<Tls>>,
    peer_addrs: PeerAddrs,
}

impl ServerBuilder {
    /// Start from a whole [`Config`].
    pub fn from_config(cfg: Config) -> Self {
        ServerBuilder {
            cfg,
            preset: PresetKnobs {
                // A whole configuration carries its shape: the knobs do not apply to it.
                topology_given: true,
                ..PresetKnobs::default()
            },
            inherited: Vec::new(),
            refusals: None,
            tls: None,
            peer_addrs: PeerAddrs::default(),
        }
    }

    /// Serve on these listening sockets instead of binding (sockets a supervisor or systemd
    /// passed down). Each listener the model asks for takes the next one, round the list
    /// again when the model wants more sockets than were given; `listen` is then ignored.
    pub fn listeners(mut self, listeners: Vec<Listener>) -> Self {
        self.inherited = listeners.into_iter().map(Arc::new).collect();
        self
    }
    /// Render the server's own refusals — 400, 408, 413, 414, 431, 505… — in the
    /// application's format (a JSON API answers them in JSON). The server keeps the status
    /// and closes the connection after it; `render` chooses the body and fields.
    ///
    /// ```
    /// use backlog_server::{Refusal, Response, Server};
    /// let builder = Server::builder().on_refusal(|r: &Refusal| {
    ///     Response::json_bytes(r.status(), format!(r#"{{"error":"{}"}}"#, r.reason()))
    /// });
    /// ```
    pub fn on_refusal(
        mut self,
        render: impl Fn(&Refusal<'_>) -> Response + Send + Sync + 'static,
    ) -> Self {
        self.refusals = Some(RenderRefusal(Arc::new(render)));
        self
    }

    /// Speak TLS (1.2 and 1.3, ALPN `http/1.1`) with these certificates on every listener.
    /// Keep the `Arc` to [`reload`](Tls::reload) them while serving.
    ///
    /// ```no_run
    /// use backlog_server::{Request, Response, Server, Tls};
    /// let tls = Tls::from_pem_files("cert.pem", "key.pem")?;
    /// Server::builder()
    ///     .tls(tls)
    ///     .serve_until_signal(|_req: Request| Response::text(200, "hello over TLS\n"))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tls(mut self, tls: Arc<Tls>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The address to listen on (default 127.0.0.1:8080; port 0 picks one).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.cfg.listen = addr;
        self
    }
    /// The architecture (default `reuseport`).
    pub fn model(mut self, model: Model) -> Self {
        self.preset.model = model;
        self.preset_changed()
    }
    /// Event-loop threads (default: one per core).
    pub fn threads(mut self, n: usize) -> Self {
        self.preset.threads = n;
        self.preset.threads_given = true;
        self.preset_changed()
    }
    /// Any shape of listeners × acceptors × readers × workers; overrides [`model`](Self::model),
    /// [`threads`](Self::threads), [`workers`](Self::workers), [`accept`](Self::accept) and
    /// [`balance`](Self::balance), before or after.
    pub fn topology(mut self, topology: Topology) -> Self {
        self.cfg.topology = topology;
        self.preset.topology_given = true;
        self
    }
    /// Worker threads for `pool` (default: one per core).
    pub fn workers(mut self, n: usize) -> Self {
        self.preset.workers = n;
        self.preset.workers_given = true;
        self.preset_changed()
    }
    /// How the scheduler treats the business's threads against the readers' (see
    /// [`BusinessPriority`]); the scheduler's defaults unless asked.
    pub fn business_priority(mut self, priority: BusinessPriority) -> Self {
        self.cfg.business_priority = priority;
        self
    }
    /// Whether readers answer a service's routes that proved cheap themselves, in a shape
    /// whose workers run it (see [`InlineAnswers`]); never unless asked.
    pub fn inline_answers(mut self, inline: InlineAnswers) -> Self {
        self.cfg.inline_answers = inline;
        self
    }
    /// The CPU a route's first poll may take and still be answered on a reader
    /// ([`Config::inline_limit`]).
    pub fn inline_limit(mut self, limit: Duration) -> Self {
        self.cfg.inline_limit = limit;
        self
    }
    /// Whether to measure waits in the kernel's accept and receive queues (on by default).
    pub fn queue_timing(mut self, timing: QueueTiming) -> Self {
        self.cfg.queue_timing = timing;
        self
    }
    /// The I/O interface of every event loop (`--io`). `Io::Uring` fails at
    /// [`bind`](ServerBuilder::bind), naming the cause, where the kernel cannot provide it.
    pub fn io(mut self, io: Io) -> Self {
        self.cfg.io = io;
        self
    }
    /// How `shared` threads take turns accepting.
    pub fn accept(mut self, strategy: AcceptStrategy) -> Self {
        self.preset.accept = strategy;
        self.preset_changed()
    }
    /// How `dispatch` picks a reader.
    pub fn balance(mut self, balance: Balance) -> Self {
        self.preset.balance = balance;
        self.preset_changed()
    }

    /// The model's knobs changed: the shape is the preset they make, unless a topology was
    /// given (or the preset breaks a rule, which [`shape`](Self::shape) reports).
    fn preset_changed(mut self) -> Self {
        if let (false, Ok(t)) = (self.preset.topology_given, self.preset.topology()) {
            self.cfg.topology = t;
        }
        self
    }

    /// The shape the server will have, or why there can be none (a model asked for with no
    /// threads, or more than a role allows).
    pub fn shape(&self) -> Result<Topology, ServerError> {
        let shape = if self.preset.topology_given {
            self.cfg.topology
        } else {
            if self.preset.threads == 0 || self.preset.workers == 0 {
                return Err(ServerError::Config(
                    "threads and workers must be at least 1".into(),
                ));
            }
            self.preset
                .topology()
                .map_err(|err| ServerError::Config(format!("topology: {err}")))?
        };
        match self.preset.handshake {
            Some(by) => shape
                .with_handshake(by)
                .map_err(|err| ServerError::Config(format!("topology: {err}"))),
            None => Ok(shape),
        }
    }

    /// Who runs TLS handshakes: the readers (default) or the shape's acceptors, which then
    /// hand established sessions to readers. Applies to a preset (`dispatch`) and to a
    /// topology given whole; a shape without acceptors refuses `HandshakeBy::Acceptors` at
    /// [`bind`](Self::bind).
    pub fn handshake(mut self, by: crate::HandshakeBy) -> Self {
        self.preset.handshake = Some(by);
        self
    }
    /// The listen(2) backlog (default 4096).
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.cfg.backlog = backlog;
        self
    }
    /// Set TCP_DEFER_ACCEPT on the listeners.
    pub fn defer_accept(mut self, on: bool) -> Self {
        self.cfg.defer_accept = on;
        self
    }
    /// Request size limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.cfg.limits = limits;
        self
    }
    /// `pool`: capacity of the request queue.
    pub fn queue_depth(mut self, depth: usize) -> Self {
        self.cfg.queue_depth = depth;
        self
    }
    /// Per-connection timeouts (header, body, idle, write, linger).
    pub fn timeouts(mut self, timeouts: crate::Timeouts) -> Self {
        self.cfg.timeouts = timeouts;
        self
    }
    /// Open connections past which accepting pauses (default: 90% of RLIMIT_NOFILE, less
    /// what the process already holds and a reserve, see
    /// [`DESCRIPTOR_RESERVE`]).
    pub fn max_conns(mut self, max: usize) -> Self {
        self.cfg.max_conns = Some(max);
        self
    }
    /// Threads for requests whose handler blocks ([`Handler::blocking`]), off the event
    /// loops. Unset, a handler that may block ([`Handler::blocking`]) gets
    /// [`DEFAULT_BLOCKING_THREADS`](crate::tuning::DEFAULT_BLOCKING_THREADS) and one that
    /// does not gets none; shapes with workers run every handler there and need none. `0`
    /// with a handler that may block is allowed, and warned about at start: its blocking
    /// calls then stall every connection of the loop they run on.
    pub fn blocking_threads(mut self, n: usize) -> Self {
        self.cfg.blocking_threads = Some(n);
        self
    }
    /// Name a secondary server (e.g. `admin`): with `single`, its one thread takes the name.
    pub fn label(mut self, label: &str) -> Self {
        self.cfg.label = Some(label.to_string());
        self
    }
    /// How long shutdown waits for requests in progress.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.drain_timeout = timeout;
        self
    }
    /// Whether a service's requests carry the client's address as a
    /// [`PeerAddr`](crate::PeerAddr) extension (off unless asked, as `axum::serve` leaves
    /// out its `ConnectInfo`: the extension costs every request an allocation). Native
    /// handlers always have it (`Request::peer_addr`).
    pub fn peer_addrs(mut self, peer_addrs: PeerAddrs) -> Self {
        self.peer_addrs = peer_addrs;
        self
    }
    /// The configuration so far.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Bind every socket, then start every thread. Returns once the server accepts.
    pub fn bind(self, handler: impl Handler) -> Result<Server, ServerError> {
        let may_block = handler.blocking().may_block();
        self.bind_app(App::Handler(Arc::new(handler)), may_block)
    }

    /// [`bind`](Self::bind) for a tower service (an axum `Router`, say): the listener,
    /// acceptor and reader roles are the shape's as for a native handler; the service's
    /// futures run on a tokio runtime of the shape's workers, or, in a shape without
    /// workers, are polled on the reader first and finished on a runtime of one thread per
    /// reader. Handlers may use tokio's timers and I/O; response bodies are streamed.
    ///
    /// ```no_run
    /// use backlog_server::{http, Server};
    /// let app = tower::service_fn(|_req: http::Request<backlog_server::RequestBody>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi\n")))
    /// });
    /// Server::builder().serve_service_until_signal(app)?;
    /// # Ok::<(), backlog_server::ServerError>(())
    /// ```
    pub fn bind_service<S: HttpService<B>, B: HttpBody>(
        self,
        service: S,
    ) -> Result<Server, ServerError> {
        let app = self.service_app(service);
        self.bind_app(app, false)
    }

    /// [`bind_service`](Self::bind_service), then block until the server stops.
    pub fn serve_service<S: HttpService<B>, B: HttpBody>(
        self,
        service: S,
    ) -> Result<Arc<StatsRegistry>, ServerError> {
        Ok(self.bind_service(service)?.wait())
    }

    /// [`bind_service`](Self::bind_service), then serve until SIGINT or SIGTERM and drain,
    /// as [`serve_until_signal`](Self::serve_until_signal) does for a handler.
    pub fn serve_service_until_signal<S: HttpService<B>, B: HttpBody>(
        self,
        service: S,
    ) -> Result<Arc<StatsRegistry>, ServerError> {
        let app = self.service_app(service);
        self.until_signal(app, false)
    }

    /// A tower service as the application the server runs, with this builder's options.
    fn service_app<S: HttpService<B>, B: HttpBody>(&self, service: S) -> App {
        App::Service(Arc::new(Tower::new(service, self.peer_addrs)))
    }

    fn bind_app(self, app: App, may_block: bool) -> Result<Server, ServerError> {
        let topology = self.shape()?;
        let ServerBuilder {
            mut cfg,
            preset,
            inherited,
            refusals,
            tls,
            ..
        } = self;
        preset.warn_ignored();
        // The one shape the wiring builds (a `handshake` asked apart is part of it).
        cfg.topology = topology;
        if tls.is_none() && topology.handshake() == crate::HandshakeBy::Acceptors {
            tracing::warn!("handshake=acceptors without TLS: there are no handshakes to run; the acceptors only accept");
        }
        if cfg.business_priority == BusinessPriority::Background && topology.workers() == 0 {
            tracing::warn!("business-priority background without workers: the readers run the business, and nothing is lowered");
        }
        if cfg.inline_answers == InlineAnswers::Learned && topology.workers() == 0 {
            tracing::info!("inline-answers learned without workers: the readers poll every answer first anyway");
        }
        if cfg.backlog == 0 {
            return Err(ServerError::Config("backlog must be at least 1".into()));
        }
        if inherited.is_empty() && cfg.listen.ip().is_unspecified() {
            tracing::warn!(addr = %cfg.listen, "listening on every interface: anything that can reach this host can reach the server");
        }
        cfg.io = resolve_io(cfg.io)?;
        let backlog = effective_backlog(cfg.backlog);
        // The process's limits are its owner's to set (the `backlog` binary raises
        // RLIMIT_NOFILE and sizes the descriptor table at start); the server works within
        // the limit it finds.
        let fd_limit = sys::rlimit::nofile();
        let max_conns = cfg
            .max_conns
            .unwrap_or_else(|| default_max_conns(fd_limit as usize, sys::fd::open_count()));
        cfg.blocking_threads = Some(blocking_pool(&cfg, &topology, may_block));
        let mut wiring = Wiring::new(&cfg, app, max_conns);
        wiring.inherited = inherited;
        wiring.refusals = refusals;
        let speaks_tls = tls.is_some();
        wiring.tls = tls;
        wiring::build(&mut wiring)?;
        let Wiring {
            shutdown,
            registry,
            layout,
            threads: bodies,
            addr,
            conn_limit,
            listeners,
            readers,
            ..
        } = wiring;
        let addr = addr.unwrap_or(cfg.listen);
        match &cfg.label {
            None => {
                let scheme = if speaks_tls { "https" } else { "http" };
                tracing::info!(model = topology.name(), topology = %topology, io = %cfg.io.name(), %addr, scheme, backlog, max_conns, "backlog serving");
                for t in &layout {
                    tracing::info!("  {t}");
                }
            }
            Some(label) => tracing::info!(%addr, "{label} listening"),
        }
        let introspect = Introspect {
            inner: Arc::new(crate::introspect::Inner {
                topology,
                io: cfg.io,
                layout: layout.clone(),
                registry: registry.clone(),
                listeners,
                readers,
                backlog,
                conn_limit,
                tls: speaks_tls,
                started: std::time::Instant::now(),
            }),
        };
        let mut threads = Vec::new();
        for (name, body) in bodies {
            match std::thread::Builder::new().name(name).spawn(body) {
                Ok(handle) => threads.push(handle),
                Err(source) => {
                    shutdown.trigger();
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(ServerError::Io {
                        what: "spawning a thread",
                        source,
                    });
                }
            }
        }
        Ok(Server {
            introspect,
            addr,
            topology,
            backlog,
            shutdown,
            registry,
            layout,
            threads,
        })
    }

    /// [`bind`](Self::bind), then block until the server stops.
    pub fn serve(self, handler: impl Handler) -> Result<Arc<StatsRegistry>, ServerError> {
        Ok(self.bind(handler)?.wait())
    }

    /// [`bind`](Self::bind), serve until SIGINT or SIGTERM, drain (requests read are
    /// answered, up to the drain timeout), and return the counters. A second signal ends
    /// the process at once (exit 1). The signals are caught before any socket serves, so one
    /// that comes during start-up drains too rather than killing the process.
    ///
    /// ```no_run
    /// use backlog_server::{Request, Response, Router, Server};
    /// let app = Router::new().get("/", |_req: Request| Response::text(200, "hi\n"));
    /// let stats = Server::builder().serve_until_signal(app)?;
    /// println!("{}", stats.table());
    /// # Ok::<(), backlog_server::ServerError>(())
    /// ```
    pub fn serve_until_signal(
        self,
        handler: impl Handler,
    ) -> Result<Arc<StatsRegistry>, ServerError> {
        let may_block = handler.blocking().may_block();
        self.until_signal(App::Handler(Arc::new(handler)), may_block)
    }

    fn until_signal(self, app: App, may_block: bool) -> Result<Arc<StatsRegistry>, ServerError> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let io = |source| ServerError::Io {
            what: "catching SIGINT and SIGTERM",
            source,
        };
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(io)?;
        let closer = signals.handle();
        let server = match self.bind_app(app, may_block) {
            Ok(server) => server,
            Err(err) => {
                closer.close();
                return Err(err);
            }
        };
        let handle = server.handle();
        let watcher = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut seen = 0;
                for signal in signals.forever() {
                    seen += 1;
                    if seen == 1 {
                        handle.shutdown();
                        tracing::info!(signal, "shutting down: finishing requests in progress");
                    } else {
                        tracing::warn!(signal, "second signal: exiting now");
                        std::process::exit(1);
                    }
                }
            })
            .map_err(io)?;
        let stats = server.wait();
        // The server stopped (by a signal, or by a handle): let the watcher go.
        closer.close();
        let _ = watcher.join();
        Ok(stats)
    }
}

/// Descriptors kept free beyond the connections and what the process holds at start: for
/// what it opens later (store connections, admin clients, files served, a reload's pipes).
/// Without it a process with a low RLIMIT_NOFILE reached the limit below `--max-conns`, and a
/// worker of `--processes` lost passed connections: the kernel discards a descriptor it
/// cannot install (MSG_CTRUNC) where accept(2) would have left it queued.
pub const DESCRIPTOR_RESERVE: usize = 64;

/// The default `--max-conns` for a descriptor limit of `limit` with `open` descriptors already
/// in use: 90% of the limit, and never past what is left after those and the reserve.
fn default_max_conns(limit: usize, open: usize) -> usize {
    (limit / 10 * 9)
        .min(limit.saturating_sub(open + DESCRIPTOR_RESERVE))
        .max(1)
}

/// Threads of the blocking pool: as configured, or, unset, a small pool when the handler may
/// block and readers run handlers (never a blocking call on an event loop by accident).
fn blocking_pool(cfg: &Config, topology: &Topology, may_block: bool) -> usize {
    let runs_on = if topology.workers() == 0 {
        "event loops"
    } else {
        "workers"
    };
    match cfg.blocking_threads {
        Some(0) if may_block => {
            tracing::warn!("blocking_threads is 0 but the handler may block: its blocking calls run on the {runs_on} and hold up every request behind them");
            0
        }
        Some(n) => n,
        None if may_block => crate::config::DEFAULT_BLOCKING_THREADS,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_ceiling_leaves_room_for_what_the_process_holds() {
        use super::{default_max_conns, DESCRIPTOR_RESERVE};
        // The issue's worker: `ulimit -n 256`, ~30 descriptors of its own.
        assert_eq!(default_max_conns(256, 30), 256 - 30 - DESCRIPTOR_RESERVE);
        // A roomy limit keeps the 90% rule.
        assert_eq!(default_max_conns(20_000, 40), 18_000);
        assert_eq!(default_max_conns(16, 40), 1);
    }

    #[test]
    fn the_config_holds_one_shape_whatever_order_the_knobs_come_in() {
        use crate::{AcceptStrategy, Model, Server, Topology};
        let a = Server::builder().threads(3).model(Model::Dispatch);
        let b = Server::builder().model(Model::Dispatch).threads(3);
        let dispatch = Topology::new(1, 1, 3, 0).unwrap();
        assert_eq!(a.shape().unwrap().to_string(), dispatch.to_string());
        assert_eq!(a.config().topology, b.config().topology);
        assert_eq!(
            a.config().topology,
            a.shape().unwrap(),
            "the config is the shape"
        );
        // A topology given whole is kept, whatever knobs come after it.
        let t = Topology::new(2, 2, 4, 1).unwrap();
        let c = Server::builder()
            .topology(t)
            .threads(9)
            .accept(AcceptStrategy::Herd);
        assert_eq!(c.shape().unwrap(), t);
        // A model asked for with no threads is no shape.
        assert!(Server::builder()
            .model(Model::Shared)
            .threads(0)
            .shape()
            .is_err());
    }
}

/// A running server.
pub struct Server {
    introspect: Introspect,
    addr: SocketAddr,
    topology: Topology,
    backlog: u32,
    shutdown: Arc<Shutdown>,
    registry: Arc<StatsRegistry>,
    layout: Vec<ThreadLayout>,
    threads: Vec<JoinHandle<()>>,
}

/// Stops a server from any thread (a signal handler's thread, a test).
#[derive(Clone)]
pub struct ServerHandle {
    shutdown: Arc<Shutdown>,
}

impl ServerHandle {
    /// Stop accepting, answer what has been read, close idle connections, then let
    /// [`Server::wait`] return.
    pub fn shutdown(&self) {
        self.shutdown.trigger();
    }
}

impl Server {
    /// Start configuring a server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
    /// The bound address (with the real port when port 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
    /// The shape running (its `preset` names the model, if it is one).
    pub fn topology(&self) -> Topology {
        self.topology
    }
    /// The accept-queue limit in force (the asked backlog after the somaxconn clamp).
    pub fn backlog(&self) -> u32 {
        self.backlog
    }
    /// Every thread and what it does.
    pub fn layout(&self) -> &[ThreadLayout] {
        &self.layout
    }
    /// Per-thread counters.
    pub fn stats(&self) -> Arc<StatsRegistry> {
        self.registry.clone()
    }
    /// A view into the running server for the admin endpoint.
    pub fn introspect(&self) -> Introspect {
        self.introspect.clone()
    }
    /// A handle that stops the server.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shutdown: self.shutdown.clone(),
        }
    }
    /// Block until every thread has finished (after a shutdown). Returns the counters.
    pub fn wait(self) -> Arc<StatsRegistry> {
        for t in self.threads {
            let _ = t.join();
        }
        self.registry
    }
    /// Shut down and wait.
    pub fn stop(self) -> Arc<StatsRegistry> {
        self.shutdown.trigger();
        self.wait()
    }
}
