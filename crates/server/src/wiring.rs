//! Wiring any [`Topology`](crate::Topology) from the same parts; the five models are its presets.
//!
//! A topology decides how many listening sockets there are, which threads accept from them,
//! which threads read connections, and who runs the handler. [`Wiring`] provides the parts —
//! bound listeners, event loops with an acceptor and/or reader role, worker threads — and
//! records the resulting layout; nothing is started until every socket is bound, so a bad
//! address fails before any thread exists. The presets, as the systems they come from:
//!
//! - `single` — Node.js: one thread, `loop-0`, listens, accepts, reads, writes and runs the
//!   handler. No locks and no handoffs; one slow handler stalls every connection.
//! - `dispatch` — memcached: thread `acceptor` accepts and hands each connection to one of
//!   `reader-0..N-1` (by `--balance`), waking it through its eventfd.
//! - `pool` — RAMCloud: `loop-0` accepts and reads; complete requests go on a bounded queue
//!   to `worker-0..M-1`, and `loop-0` writes the answers in request order per connection. A
//!   full queue stops reading, so the kernel's receive queue fills and TCP slows the client.
//! - `shared` — nginx: one socket, `loop-0..N-1` each accepting from it, taking turns by
//!   `--accept` (EPOLLEXCLUSIVE, nginx's accept_mutex, or the thundering herd).
//! - `reuseport` — socket sharding: `loop-0..N-1`, each with its own SO_REUSEPORT socket; the
//!   kernel hashes each connection to one accept queue, and a busy thread's queue is not
//!   drained by an idle one.

use crate::app::handler::Handler;
use crate::app::refusal::RenderRefusal;
use crate::app::App;
use crate::event_loop::{EventLoop, Roles};
use crate::observe::connections::{reader_port, ReaderPort};
use crate::observe::stats::{Role, StatsRegistry, ThreadStats};
use crate::priority::{Background, Crew, Priority};
use crate::roles::acceptor::{AcceptMutex, Acceptor, Turn};
use crate::roles::conn_limit::ConnLimit;
use crate::roles::handoff::{inbox, Balancer, InboxReceiver};
use crate::roles::inline::CheapRoutes;
use crate::roles::listener::{ListenOptions, Listener, Reuseport};
use crate::roles::reader::{ReaderConfig, ReaderParts};
use crate::roles::runtime::{self, ServiceExec, Tasks};
use crate::roles::worker::{self, Exec, HandlerExec, Job, PoolLink, ReplyPort, Submitter};
use crate::shape::topology::{HandshakeBy, ThreadLayout};
use crate::shutdown::Shutdown;
use crate::tls::Tls;
use crate::{AcceptStrategy, BusinessPriority, Config, ServerError};
use crossbeam_channel::{Receiver, Sender};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use sys::Waker;

type ThreadBody = Box<dyn FnOnce() + Send + 'static>;

/// Parts for building a model, and the threads waiting to be started.
pub(crate) struct Wiring<'a> {
    pub(crate) cfg: &'a Config,
    pub(crate) app: App,
    pub(crate) shutdown: Arc<Shutdown>,
    pub(crate) registry: Arc<StatsRegistry>,
    pub(crate) layout: Vec<ThreadLayout>,
    /// A service's runtime threads in a shape without workers, listed after the readers.
    runtime_layout: Vec<ThreadLayout>,
    pub(crate) threads: Vec<(String, ThreadBody)>,
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) conn_limit: Arc<ConnLimit>,
    pub(crate) listeners: Vec<(SocketAddr, Weak<Listener>)>,
    pub(crate) readers: Vec<ReaderPort>,
    /// The blocking pool's queue and the readers' reply ports, when there is a pool.
    blocking: Option<(Sender<Job>, Receiver<Job>)>,
    blocking_replies: Vec<ReplyPort>,
    /// Sockets passed down to serve on instead of binding, and how many were handed out.
    pub(crate) inherited: Vec<Arc<Listener>>,
    inherited_taken: usize,
    /// How the application renders the server's refusals.
    pub(crate) refusals: Option<RenderRefusal>,
    /// The certificates, when the listeners speak TLS.
    pub(crate) tls: Option<Arc<Tls>>,
    /// Whether the workers run in the background ([`BusinessPriority::Background`], where
    /// the process may bring them back to the normal class).
    background_workers: bool,
}

/// Whether the workers may run in the background: asked for, in a shape with workers, and
/// where a worker that enters the idle class can leave it again when the business falls
/// behind — without that a saturated server's handlers would be starved, so they stay in
/// the normal class (the readers still take short slices).
fn background_workers(cfg: &Config) -> bool {
    if cfg.business_priority != BusinessPriority::Background || cfg.topology.workers() == 0 {
        return false;
    }
    let can = sys::process::can_leave_idle_class();
    if !can {
        tracing::warn!("business-priority background: the workers stay in the normal class — a thread that enters the idle class cannot leave it here (that needs CAP_SYS_NICE, or RLIMIT_NICE 20: systemd's LimitNICE=+0); the readers still take short slices");
    }
    can
}

/// A loop before it has a role: its waker exists so that other parts (inboxes, reply
/// ports, the shutdown signal) can point at it. Its driver is made on its own thread.
pub(crate) struct LoopParts {
    pub(crate) name: String,
    pub(crate) waker: Arc<Waker>,
    pub(crate) stats: Arc<ThreadStats>,
}

impl<'a> Wiring<'a> {
    pub(crate) fn new(cfg: &'a Config, app: App, max_conns: usize) -> Self {
        Wiring {
            conn_limit: Arc::new(ConnLimit::new(max_conns)),
            listeners: Vec::new(),
            readers: Vec::new(),
            blocking: None,
            blocking_replies: Vec::new(),
            inherited: Vec::new(),
            inherited_taken: 0,
            refusals: None,
            tls: None,
            cfg,
            app,
            shutdown: Arc::new(Shutdown::default()),
            registry: Arc::new(StatsRegistry::default()),
            layout: Vec::new(),
            runtime_layout: Vec::new(),
            threads: Vec::new(),
            addr: None,
            background_workers: background_workers(cfg),
        }
    }

    /// Bind a listener on the configured address; once a port is known (port 0 asked),
    /// later listeners bind the same one (reuseport).
    pub(crate) fn listen(&mut self, reuseport: bool) -> Result<Arc<Listener>, ServerError> {
        if !self.inherited.is_empty() {
            let listener = self.inherited[self.inherited_taken % self.inherited.len()].clone();
            self.inherited_taken += 1;
            self.addr.get_or_insert(listener.local_addr());
            if self.inherited_taken <= self.inherited.len() {
                self.listeners
                    .push((listener.local_addr(), Arc::downgrade(&listener)));
                listener.prepare_accepted(self.cfg.queue_timing.stamps())?;
            }
            return Ok(listener);
        }
        let mut addr = self.cfg.listen;
        let reuseport = Reuseport::of(reuseport, self.addr.is_none());
        if let Some(bound) = self.addr {
            addr.set_port(bound.port());
        }
        let listener = Listener::bind(
            addr,
            ListenOptions {
                backlog: self.cfg.backlog,
                reuseport,
                defer_accept: self.cfg.defer_accept,
            },
        )?;
        self.addr.get_or_insert(listener.local_addr());
        listener.prepare_accepted(self.cfg.queue_timing.stamps())?;
        let listener = Arc::new(listener);
        // Weak: the admin side must not keep a listener open after shutdown closes it.
        self.listeners
            .push((listener.local_addr(), Arc::downgrade(&listener)));
        Ok(listener)
    }

    pub(crate) fn loop_parts(&mut self, name: &str, role: Role) -> Result<LoopParts, ServerError> {
        let io = |source| ServerError::Io {
            what: "creating an event loop",
            source,
        };
        let waker = Arc::new(Waker::new().map_err(io)?);
        self.shutdown.register(waker.clone());
        let stats = self.registry.add(name, role);
        Ok(LoopParts {
            name: name.to_string(),
            waker,
            stats,
        })
    }

    /// Queue a loop that accepts from `listeners` and hands every connection to a reader
    /// on another thread through `balancer`.
    pub(crate) fn spawn_accept_only(
        &mut self,
        parts: LoopParts,
        listeners: Vec<Arc<Listener>>,
        turn: Turn,
        balancer: Balancer,
    ) {
        let acceptor = self.acceptor(&parts, listeners, turn);
        if self.tls.is_some() && self.cfg.topology.handshake() == HandshakeBy::Acceptors {
            let handshakes = self.reader(&parts, Exec::Nothing, None, Some(balancer));
            self.spawn_loop(
                parts,
                Roles::AcceptAndHandshake(acceptor, handshakes),
                false,
            );
        } else {
            self.spawn_loop(parts, Roles::Accept(acceptor, balancer), false);
        }
    }

    /// Queue a loop that reads the connections handed to it through `inbox`.
    pub(crate) fn spawn_read_only(&mut self, parts: LoopParts, exec: Exec, inbox: InboxReceiver) {
        let handles = exec.runs_here();
        let reader = self.reader(&parts, exec, Some(inbox), None);
        self.spawn_loop(parts, Roles::Read(reader), handles);
    }

    /// Queue a loop that accepts from `listeners` and reads what it accepted.
    pub(crate) fn spawn_accept_and_read(
        &mut self,
        parts: LoopParts,
        listeners: Vec<Arc<Listener>>,
        turn: Turn,
        exec: Exec,
    ) {
        let handles = exec.runs_here();
        let acceptor = self.acceptor(&parts, listeners, turn);
        let reader = self.reader(&parts, exec, None, None);
        self.spawn_loop(parts, Roles::AcceptAndRead(acceptor, reader), handles);
    }

    fn acceptor(&self, parts: &LoopParts, listeners: Vec<Arc<Listener>>, turn: Turn) -> Acceptor {
        self.conn_limit.watch(parts.waker.clone());
        let mut acceptor = Acceptor::new(
            listeners,
            turn,
            parts.stats.clone(),
            self.conn_limit.clone(),
        );
        acceptor.join_mutex(parts.waker.clone());
        acceptor
    }

    fn reader(
        &mut self,
        parts: &LoopParts,
        exec: Exec,
        inbox: Option<InboxReceiver>,
        hand_over: Option<Balancer>,
    ) -> ReaderParts {
        let cfg = ReaderConfig {
            limits: self.cfg.limits,
            timeouts: self.cfg.timeouts,
            conn_limit: self.conn_limit.clone(),
            queue_timing: self.cfg.queue_timing,
            body_limit: match &self.app {
                App::Handler(handler) => {
                    let handler = handler.clone();
                    Box::new(move |req: &h1::Request| handler.body_limit(req))
                }
                // A service's body limits are its own (axum: DefaultBodyLimit); the server's
                // max_body_bytes bounds what is buffered for it.
                App::Service(_) => Box::new(|_req: &h1::Request| None),
            },
            refusals: self.refusals.clone(),
            tls: self.tls.clone(),
            stream_over: match &self.app {
                App::Handler(_) => None,
                App::Service(_) => Some(runtime::STREAM_REQUEST_OVER),
            },
        };
        let (port, queries) = reader_port(parts.waker.clone());
        self.readers.push(port);
        ReaderParts {
            exec,
            cfg,
            stats: parts.stats.clone(),
            inbox,
            name: parts.name.clone(),
            queries,
            hand_over,
        }
    }

    /// Record the loop's layout and queue it for start.
    fn spawn_loop(&mut self, parts: LoopParts, roles: Roles, handles: bool) {
        let (accepts, reads) = match &roles {
            Roles::Accept(..) | Roles::AcceptAndHandshake(..) => (true, false),
            Roles::Read(_) => (false, true),
            Roles::AcceptAndRead(..) => (true, true),
        };
        self.layout.push(ThreadLayout {
            name: parts.name.clone(),
            role: match &roles {
                Roles::Accept(..) | Roles::AcceptAndHandshake(..) => Role::Acceptor,
                Roles::Read(_) => Role::Reader,
                Roles::AcceptAndRead(..) => Role::Loop,
            },
            listens: accepts,
            accepts,
            reads,
            handles,
            handshakes: matches!(roles, Roles::AcceptAndHandshake(..)),
        });
        let acceptors_shake_hands =
            self.tls.is_some() && self.cfg.topology.handshake() == HandshakeBy::Acceptors;
        let priority = match &roles {
            Roles::AcceptAndHandshake(..) => Priority::Handshakes,
            Roles::Read(_) if acceptors_shake_hands => Priority::Requests,
            // The business runs on workers in the background: the readers' short slices
            // let them take a core from a handler the moment they wake.
            Roles::Read(_) | Roles::AcceptAndRead(..)
                if !handles && self.cfg.business_priority == BusinessPriority::Background =>
            {
                Priority::Requests
            }
            _ => Priority::Normal,
        };
        let event_loop = EventLoop {
            waker: parts.waker,
            shutdown: self.shutdown.clone(),
            roles,
            stats: parts.stats,
            drain_timeout: self.cfg.drain_timeout,
            io: self.cfg.io,
            priority,
        };
        self.threads
            .push((parts.name, Box::new(move || event_loop.run())));
    }

    /// How a reader on `parts` runs the handler: through `workers` if the shape has them,
    /// else on its own thread; either way with a link to the blocking pool for requests
    /// that may block (when there is a pool).
    pub(crate) fn exec(
        &mut self,
        handler: &Arc<dyn Handler>,
        parts: &LoopParts,
        workers: Option<PoolLink>,
    ) -> Exec {
        let blocking = (self.cfg.blocking_threads.unwrap_or(0) > 0).then(|| {
            let depth = self.cfg.queue_depth;
            let (tx, _) = self.blocking.get_or_insert_with(|| worker::queue(depth));
            let submit = Submitter::new(tx.clone(), parts.stats.clone());
            let (port, completions) = ReplyPort::new(parts.waker.clone(), parts.stats.clone());
            self.blocking_replies.push(port);
            PoolLink {
                submit,
                completions,
                reply: self.blocking_replies.len() - 1,
                // The blocking pool waits on I/O: it is never in the background, and its
                // requests are never answered on a reader.
                crew: None,
                cheap: None,
            }
        });
        Exec::Handler(HandlerExec {
            handler: handler.clone(),
            workers,
            blocking,
        })
    }

    /// Start the blocking pool's threads, once every reader has its reply port.
    fn spawn_blocking_pool(&mut self, handler: &Arc<dyn Handler>) {
        let Some((_, jobs)) = self.blocking.take() else {
            return;
        };
        let replies = Arc::new(std::mem::take(&mut self.blocking_replies));
        self.spawn_workers(
            handler,
            Role::Blocking,
            self.cfg.blocking_threads.unwrap_or(0),
            jobs,
            replies,
            PoolShared::default(),
        );
    }

    /// Queue `count` handler threads named `{role}-{i}` (`worker` or `blocking`), taking jobs
    /// from `jobs` and answering through `replies`, with what they share with the readers.
    pub(crate) fn spawn_workers(
        &mut self,
        handler: &Arc<dyn Handler>,
        role: Role,
        count: usize,
        jobs: Receiver<Job>,
        replies: Arc<Vec<ReplyPort>>,
        shared: PoolShared,
    ) {
        for i in 0..count {
            let name = format!("{}-{i}", role.name());
            let stats = self.registry.add(&name, role);
            let (handler, jobs, replies, shutdown, crew, cheap) = (
                handler.clone(),
                jobs.clone(),
                replies.clone(),
                self.shutdown.clone(),
                shared.crew.clone(),
                shared.cheap.clone(),
            );
            self.spawn_thread(
                ThreadLayout::handler(name, role),
                Box::new(move || {
                    let background = crew.as_ref().map(Background::enter);
                    worker::run(handler, jobs, replies, stats, shutdown, background, cheap)
                }),
            );
        }
    }

    /// Whether threads of `role` run the business in the background: workers, when so
    /// configured (the blocking pool's threads wait on I/O and are left as they are).
    fn in_background(&self, role: Role) -> bool {
        role == Role::Worker && self.background_workers
    }

    /// What a pool of `workers` workers shares with its readers, as configured: their crew
    /// when they run in the background, the routes' costs when readers learn cheap ones.
    fn pool_shared(&self, workers: usize) -> PoolShared {
        PoolShared {
            crew: self.in_background(Role::Worker).then(|| Crew::new(workers)),
            cheap: (self.cfg.inline_answers == crate::InlineAnswers::Learned)
                .then(|| Arc::new(CheapRoutes::new(self.cfg.inline_limit))),
        }
    }

    /// Queue a plain thread (a worker) for start.
    pub(crate) fn spawn_thread(&mut self, layout: ThreadLayout, body: ThreadBody) {
        let name = layout.name.clone();
        self.layout.push(layout);
        self.threads.push((name, body));
    }
}

/// Wire the configured shape and the blocking pool.
pub(crate) fn build(w: &mut Wiring<'_>) -> Result<(), ServerError> {
    let t = w.cfg.topology;
    let sockets = (0..t.listeners())
        .map(|_| w.listen(t.listeners() > 1))
        .collect::<Result<Vec<_>, _>>()?;
    let mutex = Arc::new(AcceptMutex::default());
    // The accepting thread `i`'s socket and how it takes turns on it.
    let accept_from = |i: usize| {
        let turn = if !t.shares_a_socket() {
            Turn::Own
        } else if w.cfg.io == crate::Io::Uring {
            // On an io_uring a shared socket is polled by every loop (see the driver).
            Turn::Herd
        } else {
            match t.accept() {
                AcceptStrategy::Exclusive => Turn::Exclusive,
                AcceptStrategy::Mutex => Turn::Mutex(mutex.clone()),
                AcceptStrategy::Herd => Turn::Herd,
            }
        };
        (vec![sockets[i % sockets.len()].clone()], turn)
    };

    // Acceptors' loops first (their stats come first, as the thread list reads), then the
    // readers, each with its inbox when acceptors feed it.
    let acceptors = (0..t.acceptors())
        .map(|i| w.loop_parts(&t.acceptor_name(i), Role::Acceptor))
        .collect::<Result<Vec<_>, _>>()?;
    let mut readers = Vec::with_capacity(t.readers());
    let mut inboxes = Vec::new();
    for i in 0..t.readers() {
        let name = match (&w.cfg.label, t.readers(), t.acceptors()) {
            (Some(label), 1, 0) => label.clone(),
            _ => t.reader_name(i),
        };
        let role = if t.acceptors() == 0 {
            Role::Loop
        } else {
            Role::Reader
        };
        let parts = w.loop_parts(&name, role)?;
        let rx = (t.acceptors() > 0).then(|| {
            let (tx, rx) = inbox(
                parts.waker.clone(),
                parts.stats.clone(),
                w.conn_limit.clone(),
            );
            inboxes.push(tx);
            rx
        });
        readers.push((parts, rx));
    }

    // Who runs the application: one worker pool (or runtime) for every reader, or each
    // reader itself.
    let parts: Vec<&LoopParts> = readers.iter().map(|(p, _)| p).collect();
    let execs = match w.app.clone() {
        App::Handler(handler) => handler_execs(w, &handler, &parts),
        App::Service(app) => service_execs(w, app, &parts)?,
    };

    for (i, parts) in acceptors.into_iter().enumerate() {
        let (listeners, turn) = accept_from(i);
        let balancer = Balancer::new(t.balance(), inboxes.clone());
        w.spawn_accept_only(parts, listeners, turn, balancer);
    }
    // The acceptors hold their own clones: the readers' drain waits for every one to go.
    drop(inboxes);
    for (i, ((parts, rx), exec)) in readers.into_iter().zip(execs).enumerate() {
        match rx {
            Some(rx) => w.spawn_read_only(parts, exec, rx),
            None => {
                let (listeners, turn) = accept_from(i);
                w.spawn_accept_and_read(parts, listeners, turn, exec);
            }
        }
    }
    let runtime = std::mem::take(&mut w.runtime_layout);
    w.layout.extend(runtime);
    if let App::Handler(handler) = w.app.clone() {
        w.spawn_blocking_pool(&handler);
    }
    Ok(())
}

/// What a native handler's worker pool shares with its readers besides the queues.
#[derive(Default)]
pub(crate) struct PoolShared {
    /// The workers in the background, whom a reader brings back when work piles up.
    crew: Option<Arc<Crew>>,
    /// What each route cost the workers, for the readers to answer the cheap ones.
    cheap: Option<Arc<CheapRoutes>>,
}

/// A native handler's executors: one worker pool for every reader, or each reader itself.
fn handler_execs(
    w: &mut Wiring<'_>,
    handler: &Arc<dyn Handler>,
    readers: &[&LoopParts],
) -> Vec<Exec> {
    let t = w.cfg.topology;
    let mut execs = Vec::with_capacity(readers.len());
    if t.workers() == 0 {
        for parts in readers {
            execs.push(w.exec(handler, parts, None));
        }
        return execs;
    }
    let (tx, jobs) = worker::queue(w.cfg.queue_depth);
    // The routes the readers answer themselves are learned from the workers' calls.
    let shared = w.pool_shared(t.workers());
    let mut replies = Vec::with_capacity(readers.len());
    for parts in readers {
        let (port, completions) = ReplyPort::new(parts.waker.clone(), parts.stats.clone());
        replies.push(port);
        let link = PoolLink {
            submit: Submitter::new(tx.clone(), parts.stats.clone()),
            completions,
            reply: replies.len() - 1,
            crew: shared.crew.clone(),
            cheap: shared.cheap.clone(),
        };
        execs.push(w.exec(handler, parts, Some(link)));
    }
    let replies = Arc::new(replies);
    w.spawn_workers(handler, Role::Worker, t.workers(), jobs, replies, shared);
    execs
}

/// A service's executors: a runtime of the shape's workers (`worker-N`), every future
/// spawned on it; or, in a shape without workers, futures polled first on their reader and
/// finished on a runtime of one thread per reader (`async-N`).
fn service_execs(
    w: &mut Wiring<'_>,
    app: Arc<dyn crate::app::service::AsyncApp>,
    readers: &[&LoopParts],
) -> Result<Vec<Exec>, ServerError> {
    let t = w.cfg.topology;
    let inline = t.workers() == 0;
    let (prefix, count) = if inline {
        ("async", readers.len())
    } else {
        ("worker", t.workers())
    };
    let stats: Vec<Arc<ThreadStats>> = (0..count)
        .map(|i| w.registry.add(&format!("{prefix}-{i}"), Role::Worker))
        .collect();
    let threads = stats
        .iter()
        .map(|s| ThreadLayout::handler(s.name().to_string(), Role::Worker));
    // Listed as `Topology::layout` lists them: workers first, the readers' runtime last.
    if inline {
        w.runtime_layout.extend(threads);
    } else {
        w.layout.extend(threads);
    }
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Readers that poll every answer first share nothing more with the runtime; where
    // workers run the business, the routes the readers answer themselves are learned from
    // the workers' first polls.
    let PoolShared { crew, cheap } = if inline {
        PoolShared::default()
    } else {
        w.pool_shared(count)
    };
    let background = crew.clone().map(|crew| (crew, in_flight.clone()));
    let rt = runtime::start(stats, background).map_err(|source| ServerError::Io {
        what: "starting the service's runtime",
        source,
    })?;
    let (alive, gone) = crossbeam_channel::bounded::<()>(0);
    let execs = readers
        .iter()
        .map(|parts| {
            let (port, completions) = ReplyPort::new(parts.waker.clone(), parts.stats.clone());
            let tasks = Tasks::new(
                rt.handle().clone(),
                app.clone(),
                port,
                in_flight.clone(),
                w.cfg.queue_depth,
                alive.clone(),
                cheap.clone(),
            )
            .rendering_refusals(w.refusals.clone());
            Exec::Service(ServiceExec {
                tasks,
                completions,
                inline,
                waker: parts.waker.clone(),
                crew: crew.clone(),
                workers: t.workers(),
            })
        })
        .collect();
    w.threads.push((
        format!("{prefix}-runtime"),
        Box::new(runtime::keep(rt, gone)),
    ));
    Ok(execs)
}
