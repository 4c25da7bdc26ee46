//! The five models, each a few lines of wiring over the same parts.
//!
//! A model decides how many listening sockets there are, which threads accept from them,
//! which threads read connections, and who runs the handler. [`Wiring`] provides the parts —
//! bound listeners, event loops with an acceptor and/or reader role, worker threads — and
//! records the resulting layout; nothing is started until every socket is bound, so a bad
//! address fails before any thread exists.

mod dispatch;
mod pool;
mod reuseport;
mod shared;
mod single;

use crate::acceptor::{Acceptor, Sink, Turn};
use crate::conn_limit::ConnLimit;
use crate::event_loop::EventLoop;
use crate::handler::Handler;
use crate::introspect::{reader_port, ReaderPort};
use crate::listener::{ListenOptions, Listener};
use crate::reader::{Exec, PoolLink, Reader, ReaderConfig};
use crate::shutdown::Shutdown;
use crate::stats::{Role, StatsRegistry, ThreadStats};
use crate::worker::{self, Job, ReplyPort, Submitter};
use crate::{Config, Model, ServerError};
use crossbeam_channel::{Receiver, Sender};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use sys::{Epoll, Waker};

/// What one thread does, for the start-up log and for introspection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ThreadLayout {
    /// Thread name (as in /proc/PID/task/*/comm).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// It owns listening sockets.
    pub listens: bool,
    /// It calls accept.
    pub accepts: bool,
    /// It reads and writes connections.
    pub reads: bool,
    /// It runs the handler.
    pub handles: bool,
}

impl std::fmt::Display for ThreadLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if self.listens {
            parts.push("listens");
        }
        if self.accepts {
            parts.push("accepts");
        }
        if self.reads {
            parts.push("reads/writes");
        }
        if self.handles {
            parts.push("handles");
        }
        write!(f, "{}: {}", self.name, parts.join(", "))
    }
}

type ThreadBody = Box<dyn FnOnce() + Send + 'static>;

/// Parts for building a model, and the threads waiting to be started.
pub(crate) struct Wiring<'a> {
    pub(crate) cfg: &'a Config,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) shutdown: Arc<Shutdown>,
    pub(crate) registry: Arc<StatsRegistry>,
    pub(crate) layout: Vec<ThreadLayout>,
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
}

/// A loop before it has a role: its epoll and waker exist so that other parts (inboxes,
/// reply ports, the shutdown signal) can point at it.
pub(crate) struct LoopParts {
    pub(crate) name: String,
    pub(crate) epoll: Epoll,
    pub(crate) waker: Arc<Waker>,
    pub(crate) stats: Arc<ThreadStats>,
}

impl<'a> Wiring<'a> {
    pub(crate) fn new(cfg: &'a Config, handler: Arc<dyn Handler>, max_conns: usize) -> Self {
        Wiring {
            conn_limit: Arc::new(ConnLimit::new(max_conns)),
            listeners: Vec::new(),
            readers: Vec::new(),
            blocking: None,
            blocking_replies: Vec::new(),
            inherited: Vec::new(),
            inherited_taken: 0,
            cfg,
            handler,
            shutdown: Arc::new(Shutdown::default()),
            registry: Arc::new(StatsRegistry::default()),
            layout: Vec::new(),
            threads: Vec::new(),
            addr: None,
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
            }
            return Ok(listener);
        }
        let mut addr = self.cfg.listen;
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
        let epoll = Epoll::new().map_err(io)?;
        let waker = Arc::new(Waker::new().map_err(io)?);
        self.shutdown.register(waker.clone());
        let stats = self.registry.add(name, role);
        Ok(LoopParts {
            name: name.to_string(),
            epoll,
            waker,
            stats,
        })
    }

    /// Queue an event loop for start with the given roles.
    pub(crate) fn spawn_loop(
        &mut self,
        parts: LoopParts,
        accept: Option<(Vec<Arc<Listener>>, Turn, Sink)>,
        read: Option<(Exec, Option<crate::handoff::InboxReceiver>)>,
    ) {
        let handles = matches!(read, Some((Exec::Inline { .. }, _)));
        let role = match (&accept, &read) {
            (Some(_), None) => Role::Acceptor,
            (None, Some(_)) => Role::Reader,
            _ => Role::Loop,
        };
        self.layout.push(ThreadLayout {
            name: parts.name.clone(),
            role,
            listens: accept.is_some(),
            accepts: accept.is_some(),
            reads: read.is_some(),
            handles,
        });
        if accept.is_some() {
            self.conn_limit.watch(parts.waker.clone());
        }
        let acceptor = accept.map(|(listeners, turn, sink)| {
            Acceptor::new(
                listeners,
                turn,
                sink,
                parts.stats.clone(),
                self.conn_limit.clone(),
            )
        });
        let reader = read.map(|(exec, inbox)| {
            let cfg = ReaderConfig {
                limits: self.cfg.limits,
                timeouts: self.cfg.timeouts,
                conn_limit: self.conn_limit.clone(),
            };
            let (port, queries) = reader_port(parts.waker.clone());
            self.readers.push(port);
            Reader::new(
                exec,
                cfg,
                parts.stats.clone(),
                inbox,
                (parts.name.clone(), queries),
            )
        });
        let event_loop = EventLoop {
            epoll: parts.epoll,
            waker: parts.waker,
            shutdown: self.shutdown.clone(),
            acceptor,
            reader,
            stats: parts.stats,
            drain_timeout: self.cfg.drain_timeout,
        };
        self.threads
            .push((parts.name, Box::new(move || event_loop.run())));
    }

    /// How a reader on `parts` runs the handler: on its own thread, with a link to the
    /// blocking pool for requests that may block (when the pool is configured).
    pub(crate) fn inline_exec(&mut self, parts: &LoopParts) -> Exec {
        let blocking = (self.cfg.blocking_threads > 0).then(|| {
            let depth = self.cfg.queue_depth;
            let (tx, _) = self.blocking.get_or_insert_with(|| worker::queue(depth));
            let submit = Submitter::new(tx.clone(), parts.stats.clone());
            let (port, completions) = ReplyPort::new(parts.waker.clone(), parts.stats.clone());
            self.blocking_replies.push(port);
            PoolLink {
                submit,
                completions,
                reply: self.blocking_replies.len() - 1,
            }
        });
        Exec::Inline {
            handler: self.handler.clone(),
            blocking,
        }
    }

    /// Start the blocking pool's threads, once every reader has its reply port.
    fn spawn_blocking_pool(&mut self) {
        let Some((_, jobs)) = self.blocking.take() else {
            return;
        };
        let replies = Arc::new(std::mem::take(&mut self.blocking_replies));
        self.spawn_workers(Role::Blocking, self.cfg.blocking_threads, jobs, replies);
    }

    /// Queue `count` handler threads named `{role}-{i}` (`worker` or `blocking`), taking jobs
    /// from `jobs` and answering through `replies`.
    pub(crate) fn spawn_workers(
        &mut self,
        role: Role,
        count: usize,
        jobs: Receiver<Job>,
        replies: Arc<Vec<ReplyPort>>,
    ) {
        for i in 0..count {
            let name = format!("{}-{i}", role.name());
            let stats = self.registry.add(&name, role);
            let (handler, jobs, replies, shutdown) = (
                self.handler.clone(),
                jobs.clone(),
                replies.clone(),
                self.shutdown.clone(),
            );
            self.spawn_thread(
                ThreadLayout {
                    name,
                    role,
                    listens: false,
                    accepts: false,
                    reads: false,
                    handles: true,
                },
                Box::new(move || worker::run(handler, jobs, replies, stats, shutdown)),
            );
        }
    }

    /// Queue a plain thread (a worker) for start.
    pub(crate) fn spawn_thread(&mut self, layout: ThreadLayout, body: ThreadBody) {
        let name = layout.name.clone();
        self.layout.push(layout);
        self.threads.push((name, body));
    }
}

/// Wire `cfg.model`.
pub(crate) fn build(w: &mut Wiring<'_>) -> Result<(), ServerError> {
    match w.cfg.model {
        Model::Single => single::build(w),
        Model::Dispatch => dispatch::build(w),
        Model::Pool => pool::build(w),
        Model::Shared => shared::build(w),
        Model::Reuseport => reuseport::build(w),
    }?;
    w.spawn_blocking_pool();
    Ok(())
}
