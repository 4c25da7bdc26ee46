//! What a server is asked to be: its shape, its socket options, limits and timeouts, and the
//! names every setting has on the command line.

pub use crate::observe::queue_wait::QueueTiming;
pub use crate::shape::model::{AcceptStrategy, Balance, Model};
use crate::shape::topology::{HandshakeBy, ParseDefaults, Topology, TopologyError};
use h1::Limits;
use std::net::SocketAddr;
use std::time::Duration;

/// A name that is not one of a type's choices (`--model`, `--accept`, `--balance`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?}: expected one of {choices}")]
pub struct UnknownName {
    given: String,
    choices: String,
}

/// `FromStr` and `Display` from the names a type already gives its values.
macro_rules! named {
    ($ty:ident, $($variant:ident),+) => {
        impl std::str::FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let all = [$($ty::$variant),+];
                all.into_iter().find(|v| v.name() == s).ok_or_else(|| UnknownName {
                    given: s.to_string(),
                    choices: all.map(|v| v.name()).join(", "),
                })
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

named!(Model, Single, Dispatch, Pool, Shared, Reuseport);
named!(AcceptStrategy, Exclusive, Mutex, Herd);
named!(Balance, RoundRobin, LeastConns, P2c);
named!(QueueTiming, On, Sampled, Off);
named!(Io, Epoll, Uring, Auto);
named!(HandshakeBy, Readers, Acceptors);
named!(BusinessPriority, Normal, Background);
named!(InlineAnswers, Never, Learned);

/// How the scheduler treats the threads that run the business (`--business-priority`), in
/// a shape whose workers run it apart from the readers. Where a handler spins on the CPU for
/// milliseconds (a report, a hash, a template), a reader that wakes on its core waits for
/// the handler's slice to end, and so does every short request behind that reader: the
/// mixed load's fast requests then wait behind its slow ones although they never share a
/// thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BusinessPriority {
    /// The scheduler's defaults for every thread.
    #[default]
    Normal,
    /// The workers in the `SCHED_IDLE` class while the business keeps up, and the readers
    /// asking for short slices ([`READER_SLICE`](crate::tuning::READER_SLICE)): a reader,
    /// and any other process's thread, that wakes on a core where a handler runs takes the
    /// core at once. In the idle class a handler gets only what the normal class leaves, so
    /// a worker returns to the normal class while more work waits than one piece per worker
    /// (a saturated server, or one sharing its cores with other busy work) and goes back
    /// once none waits. Applies to the shape's workers (a native handler's pool, a
    /// service's runtime); a shape without workers has nothing to lower, and says so at
    /// start.
    Background,
}

impl BusinessPriority {
    /// Every choice.
    pub const ALL: [BusinessPriority; 2] = [BusinessPriority::Normal, BusinessPriority::Background];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BusinessPriority::Normal => "normal",
            BusinessPriority::Background => "background",
        }
    }
}

/// Whether a reader answers some requests itself in a shape whose workers run the business
/// (`--inline-answers`), a native handler's or a service's. A shape without workers runs
/// every request on its reader whatever this says; a native handler's requests that may
/// block ([`Handler::blocking`](crate::Handler::blocking)) always go to the blocking pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InlineAnswers {
    /// Every request goes to the workers: a reader never runs the service.
    #[default]
    Never,
    /// A route (method and path) whose answers the workers saw ready at their first poll (a
    /// native handler: its call) within [`Config::inline_limit`] of CPU (50 µs) and without
    /// blocking, 16 times in a row, is answered by the reader from then on, with no hop to
    /// a worker and back. One that must wait there, or runs longer there (a poll long in
    /// wall time is measured in CPU on its next turn, so a preempted reader is not held
    /// against the route), goes back to the workers and must prove itself twice as long
    /// before it returns. A route that turns slow holds a reader at most twice per such
    /// turn. Nothing is answered on a reader while work waits for the workers.
    Learned,
}

impl InlineAnswers {
    /// Every choice.
    pub const ALL: [InlineAnswers; 2] = [InlineAnswers::Never, InlineAnswers::Learned];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            InlineAnswers::Never => "never",
            InlineAnswers::Learned => "learned",
        }
    }
}

/// The interface the event loops use to talk to the kernel (`--io`). The default is epoll;
/// the library reads no environment, but [`Io::from_env`] lets a program (the `backlog`
/// binary, a test suite) take it from `BACKLOG_IO` when it chooses to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Io {
    /// epoll readiness, then `accept4`/`recvmsg`/`write` per connection.
    #[default]
    Epoll,
    /// io_uring completions: multishot accept and receive, sends submitted with the wait.
    /// Fails at start, naming the cause, where the kernel cannot provide it.
    Uring,
    /// io_uring where available, else epoll; says at start which it chose.
    Auto,
}

impl Io {
    /// What the `BACKLOG_IO` environment variable names (`epoll`, `uring`, `auto`), else
    /// epoll: for a program that lets its environment choose — a whole deployment, or a whole
    /// test suite run again under io_uring, switches driver without code changes. The
    /// library never calls it itself.
    pub fn from_env() -> Io {
        std::env::var("BACKLOG_IO")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(Io::Epoll)
    }

    /// Every choice.
    pub const ALL: [Io; 3] = [Io::Epoll, Io::Uring, Io::Auto];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Io::Epoll => "epoll",
            Io::Uring => "uring",
            Io::Auto => "auto",
        }
    }
}

/// Everything [`ServerBuilder`](crate::ServerBuilder) collects.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (shared by every reuseport socket).
    pub listen: SocketAddr,
    /// The shape: who listens, accepts, reads and handles (a model's preset, or any
    /// topology). The one description of it the server is built from.
    pub topology: Topology,
    /// The backlog passed to listen(2); the kernel clamps it to net.core.somaxconn.
    pub backlog: u32,
    /// Set TCP_DEFER_ACCEPT on listeners.
    pub defer_accept: bool,
    /// Measure waits in the kernel's accept and receive queues.
    pub queue_timing: QueueTiming,
    /// The I/O interface of every event loop: epoll, io_uring, or io_uring where the
    /// kernel has it. Checked when the server binds.
    pub io: Io,
    /// Request size limits.
    pub limits: Limits,
    /// `pool`: capacity of the request queue; when full, the loop stops reading.
    pub queue_depth: usize,
    /// How long a graceful shutdown waits for in-flight requests before cutting them.
    pub drain_timeout: Duration,
    /// Per-connection timeouts.
    pub timeouts: Timeouts,
    /// Open connections (across all threads) past which accepting pauses; `None`: 90% of
    /// RLIMIT_NOFILE after raising the soft limit to the hard one.
    pub max_conns: Option<usize>,
    /// Threads of the blocking pool that takes [`Handler::blocking`](crate::Handler::blocking)
    /// requests off the event loops and the workers. `None`: [`DEFAULT_BLOCKING_THREADS`]
    /// when the handler may block ([`Handler::blocking`](crate::Handler::blocking)), else
    /// none. `Some(0)` with a handler that may block runs its blocking calls where the
    /// other requests run, with a warning at start.
    pub blocking_threads: Option<usize>,
    /// A name for a secondary server in the same process (the admin listener): its thread
    /// (`single` only) and its log lines carry it.
    pub label: Option<String>,
    /// How the scheduler treats the workers that run the business, against the readers.
    pub business_priority: BusinessPriority,
    /// Whether readers answer a service's cheap routes themselves where workers run it.
    pub inline_answers: InlineAnswers,
    /// With [`InlineAnswers::Learned`]: the CPU a route's first poll may take and still be
    /// answered on a reader, which holds every other connection of the reader that long.
    /// [`DEFAULT_INLINE_LIMIT`](crate::tuning::DEFAULT_INLINE_LIMIT) unless set.
    pub inline_limit: Duration,
}

/// A cheap route's first poll: the lab's axum `/` runs 2–8 µs of CPU, and up to ~40 µs on
/// a reader whose caches another thread just took (measured: 25 of 1,316 such polls past
/// 20 µs, none past 40). A debug build's runs ~110–180 µs.
pub const DEFAULT_INLINE_LIMIT: Duration = Duration::from_micros(50);

/// Deadlines that protect the server from clients that are slow on purpose or by accident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A request head must be complete this long after it started (and a new connection
    /// must send one this long after accept): slowloris. Past it: 408 and close.
    pub header: Duration,
    /// While a body is being read, the longest wait for its next bytes. Past it: 408, close.
    pub body: Duration,
    /// A keep-alive connection with nothing in progress is closed after this long.
    pub idle: Duration,
    /// While output is waiting to be sent, the longest wait for the client to take some:
    /// a client that stops reading is cut off and its memory freed.
    pub write: Duration,
    /// After refusing a request: how long to read and discard what the client still sends,
    /// so closing sends FIN rather than RST and the client gets to read the refusal.
    pub linger: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header: Duration::from_secs(10),
            body: Duration::from_secs(30),
            idle: Duration::from_secs(60),
            write: Duration::from_secs(30),
            linger: Duration::from_secs(2),
        }
    }
}

/// The blocking pool started for a handler that may block when none was configured.
pub const DEFAULT_BLOCKING_THREADS: usize = 4;

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            topology: PresetKnobs::default()
                .topology()
                .expect("one reuseport loop per core keeps the rules"),
            backlog: 4096,
            defer_accept: false,
            queue_timing: QueueTiming::default(),
            io: Io::default(),
            limits: Limits::default(),
            queue_depth: 1024,
            drain_timeout: Duration::from_secs(30),
            timeouts: Timeouts::default(),
            max_conns: None,
            label: None,
            blocking_threads: None,
            business_priority: BusinessPriority::Normal,
            inline_answers: InlineAnswers::Never,
            inline_limit: DEFAULT_INLINE_LIMIT,
        }
    }
}

/// The knobs of a model's preset, as the builder collects them (in any order).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PresetKnobs {
    pub(crate) model: Model,
    pub(crate) threads: usize,
    pub(crate) workers: usize,
    pub(crate) accept: AcceptStrategy,
    pub(crate) balance: Balance,
    /// A topology was given whole: the knobs do not apply.
    pub(crate) topology_given: bool,
    /// Set explicitly, so a shape that does not use them can say so at `bind`.
    pub(crate) threads_given: bool,
    pub(crate) workers_given: bool,
    /// Who runs TLS handshakes, when asked apart from the shape (`--handshake`): it applies
    /// to a preset and to a topology given whole alike.
    pub(crate) handshake: Option<HandshakeBy>,
}

impl Default for PresetKnobs {
    /// `reuseport`, one loop (and, for `pool`, one worker) per core, with the strategies a
    /// parsed topology defaults to: the one place these defaults are written.
    fn default() -> Self {
        let machine = ParseDefaults::this_machine();
        PresetKnobs {
            model: Model::Reuseport,
            threads: machine.per_core,
            workers: machine.per_core,
            accept: machine.accept,
            balance: machine.balance,
            topology_given: false,
            threads_given: false,
            workers_given: false,
            handshake: None,
        }
    }
}

impl PresetKnobs {
    pub(crate) fn topology(&self) -> Result<Topology, TopologyError> {
        Topology::preset(
            self.model,
            self.threads,
            self.workers,
            self.accept,
            self.balance,
        )
    }

    /// Say once, at start, which given settings the shape does not use.
    pub(crate) fn warn_ignored(self) {
        if self.topology_given {
            if self.threads_given || self.workers_given {
                tracing::warn!("threads and workers are not used with a topology (it says how many of each role)");
            }
            return;
        }
        if self.threads_given && self.model == Model::Pool {
            tracing::warn!(
                "threads is not used by the pool model (one loop; workers sets its handler threads)"
            );
        }
        if self.workers_given && self.model != Model::Pool {
            tracing::warn!(
                model = self.model.name(),
                "workers is used by the pool model only; use a topology for readers with workers"
            );
        }
    }
}
