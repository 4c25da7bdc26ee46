//! The shape of a server: who listens, who accepts, who reads, who runs the handler.
//!
//! The notes backlog comes from separate the roles for one reason: "you may have 1 listener,
//! 3 acceptors, 5 readers". A [`Topology`] is that sentence as a value — L listening sockets,
//! A threads that only accept, R threads that own connections, W threads that run handlers —
//! and the one source of truth for what threads a server starts and what they are called.
//! The five models are presets of it ([`Topology::preset`]); `wiring` builds any valid shape.
//!
//! A `Topology` cannot exist invalid: its fields are private, and every way to make one —
//! [`Topology::new`], [`Topology::preset`], [`Topology::parse`] and [`str::parse`] — checks
//! the rules below and names the one broken. Nothing in it reads the machine: "one reader
//! per core" is resolved by whoever parses ([`ParseDefaults`]).
//!
//! The rules a shape must follow, and why:
//! - with no acceptors, the readers accept for themselves: either all from one socket (taking
//!   turns by [`AcceptStrategy`]) or each from its own SO_REUSEPORT socket (listeners = readers);
//! - with acceptors, they share one socket (by [`AcceptStrategy`]) or each has its own
//!   (listeners = acceptors), and every acceptor hands connections to any reader by [`Balance`];
//! - with workers, every reader queues parsed requests to the one pool and writes the answers
//!   back in request order per connection; without, readers run handlers inline.

use crate::shape::model::{AcceptStrategy, Balance, Model};
use std::fmt;
use std::str::FromStr;

/// What a thread does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Accepts, reads and handles (single, shared, reuseport; pool's loop-0 minus handling).
    Loop,
    /// Only accepts, and hands connections over (dispatch).
    Acceptor,
    /// Reads and handles connections it was handed (dispatch).
    Reader,
    /// Runs handlers for requests another thread read (pool).
    Worker,
    /// Runs the handlers that say they block (`Handler::blocking`), for requests a loop read:
    /// the blocking pool. Its requests are the exception, so it is left out of balance figures.
    Blocking,
}

impl Role {
    /// Lowercase name for logs and tables.
    pub fn name(self) -> &'static str {
        match self {
            Role::Loop => "loop",
            Role::Acceptor => "acceptor",
            Role::Reader => "reader",
            Role::Worker => "worker",
            Role::Blocking => "blocking",
        }
    }
}

/// The most threads of one role a topology may ask for: past it a typo, not a design.
pub const MAX_PER_ROLE: usize = 1024;

/// Who listens, accepts, reads and handles. Make one with [`Topology::new`] or
/// [`Topology::preset`], or parse one (`"listeners=1 acceptors=3 readers=5 workers=8"`, or
/// a model name) with [`Topology::parse`] or [`str::parse`]; each checks the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    /// Listening sockets on the port; more than one means SO_REUSEPORT.
    listeners: usize,
    /// Threads that only accept and hand connections over; 0: readers accept for themselves.
    acceptors: usize,
    /// Threads that own connections: read, parse, write.
    readers: usize,
    /// Threads that run handlers; 0: readers run them inline.
    workers: usize,
    /// How threads sharing one socket take turns accepting.
    accept: AcceptStrategy,
    /// How acceptors choose a reader.
    balance: Balance,
    /// Who runs a TLS connection's handshake.
    handshake: HandshakeBy,
    /// The model this shape is the preset of, if any: it keeps that model's thread names.
    preset: Option<Model>,
}

/// Who runs a TLS connection's handshake (`handshake=` in a topology's text). A full
/// handshake costs hundreds of microseconds of CPU, a keep-alive request a few: where it
/// runs decides whose requests wait behind a burst of new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HandshakeBy {
    /// The reader that will serve the connection (what nginx and HAProxy do: one loop
    /// for handshakes and requests).
    #[default]
    Readers,
    /// The acceptors: they complete each handshake and hand the established session to a
    /// reader with the socket, so a burst of new connections never delays requests on
    /// established ones. Needs acceptors (`acceptors=N`).
    Acceptors,
}

impl HandshakeBy {
    /// Both, readers first.
    pub const ALL: [HandshakeBy; 2] = [HandshakeBy::Readers, HandshakeBy::Acceptors];

    /// Its name in a topology's text.
    pub fn name(self) -> &'static str {
        match self {
            HandshakeBy::Readers => "readers",
            HandshakeBy::Acceptors => "acceptors",
        }
    }
}

/// What a parsed shape takes for what its text leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseDefaults {
    /// Readers when `readers=` is not given, and a model name's thread count.
    pub per_core: usize,
    /// `accept=` when not given.
    pub accept: AcceptStrategy,
    /// `balance=` when not given.
    pub balance: Balance,
}

impl ParseDefaults {
    /// One reader per core of this machine, `exclusive`, `round-robin`: what [`str::parse`]
    /// uses.
    pub fn this_machine() -> Self {
        ParseDefaults {
            per_core: std::thread::available_parallelism().map_or(1, |n| n.get()),
            accept: AcceptStrategy::Exclusive,
            balance: Balance::RoundRobin,
        }
    }
}

/// A shape that cannot be built, or text that is not a shape. Each names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// A role that must have at least one thread has none.
    #[error("{0}=0: a server needs at least one {one}", one = singular(.0))]
    None(&'static str),
    /// More threads of one role than [`MAX_PER_ROLE`].
    #[error("{role}={n}: at most {MAX_PER_ROLE}")]
    TooMany {
        /// The role.
        role: &'static str,
        /// What was asked.
        n: usize,
    },
    /// Readers that accept for themselves need one shared socket or one socket each.
    #[error(
        "listeners={listeners} with acceptors=0: readers accept for themselves, so listeners \
         must be 1 (shared by every reader) or equal readers={readers} (one SO_REUSEPORT \
         socket each)"
    )]
    ReaderSockets {
        /// Listeners asked for.
        listeners: usize,
        /// Readers asked for.
        readers: usize,
    },
    /// Acceptors need one shared socket or one socket each.
    #[error(
        "listeners={listeners} with acceptors={acceptors}: listeners must be 1 (shared by \
         every acceptor) or equal acceptors (one SO_REUSEPORT socket each)"
    )]
    AcceptorSockets {
        /// Listeners asked for.
        listeners: usize,
        /// Acceptors asked for.
        acceptors: usize,
    },
    /// Handshakes on acceptors in a shape that has none.
    #[error(
        "handshake=acceptors with acceptors=0: there is no acceptor to run handshakes (give \
         acceptors=N, or leave handshakes to the readers)"
    )]
    HandshakeWithoutAcceptors,
    /// A word that is not `key=value`.
    #[error("{0:?} is not key=value (e.g. \"listeners=1 acceptors=3 readers=5 workers=8\")")]
    NotKeyValue(String),
    /// A key this type does not have.
    #[error(
        "unknown key {0:?} (listeners, acceptors, readers, workers, accept, balance, handshake)"
    )]
    UnknownKey(String),
    /// A key given twice.
    #[error("{0} given twice")]
    Repeated(String),
    /// A value that does not parse.
    #[error("{key}={value}: {why}")]
    BadValue {
        /// The key.
        key: String,
        /// Its value.
        value: String,
        /// What was expected.
        why: &'static str,
    },
}

fn singular(role: &str) -> &str {
    role.strip_suffix('s').unwrap_or(role)
}

/// What one thread does, for the start-up log, `--dry-run` and introspection.
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
    /// It runs TLS handshakes for other threads' connections (an acceptor with
    /// `handshake=acceptors`; readers run their own otherwise).
    #[serde(default)]
    pub handshakes: bool,
}

impl ThreadLayout {
    /// A thread that only runs the application (a worker, a blocking or runtime thread).
    pub(crate) fn handler(name: String, role: Role) -> ThreadLayout {
        ThreadLayout {
            name,
            role,
            listens: false,
            accepts: false,
            reads: false,
            handles: true,
            handshakes: false,
        }
    }
}

impl fmt::Display for ThreadLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.listens {
            parts.push("listens");
        }
        if self.accepts {
            parts.push("accepts");
        }
        if self.handshakes {
            parts.push("TLS handshakes");
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

impl Topology {
    /// A custom shape of `listeners` sockets, `acceptors` accept-only threads, `readers` and
    /// `workers` (taking turns `exclusive` on a shared socket, balancing `round-robin`: see
    /// [`Topology::with_accept`], [`Topology::with_balance`]).
    pub fn new(
        listeners: usize,
        acceptors: usize,
        readers: usize,
        workers: usize,
    ) -> Result<Topology, TopologyError> {
        Topology {
            listeners,
            acceptors,
            readers,
            workers,
            accept: AcceptStrategy::Exclusive,
            balance: Balance::RoundRobin,
            handshake: HandshakeBy::Readers,
            preset: None,
        }
        .checked()
    }

    /// The same shape, its threads sharing a socket taking turns by `accept`.
    pub fn with_accept(mut self, accept: AcceptStrategy) -> Topology {
        self.accept = accept;
        self
    }

    /// The same shape, its acceptors choosing a reader by `balance`.
    pub fn with_balance(mut self, balance: Balance) -> Topology {
        self.balance = balance;
        self
    }

    /// The same shape with TLS handshakes run `by` readers or acceptors (acceptors only
    /// where the shape has some).
    pub fn with_handshake(mut self, by: HandshakeBy) -> Result<Topology, TopologyError> {
        self.handshake = by;
        self.checked()
    }

    /// Who runs TLS handshakes.
    pub fn handshake(&self) -> HandshakeBy {
        self.handshake
    }

    /// Listening sockets on the port; more than one means SO_REUSEPORT.
    pub fn listeners(&self) -> usize {
        self.listeners
    }
    /// Threads that only accept and hand connections over; 0: readers accept for
    /// themselves.
    pub fn acceptors(&self) -> usize {
        self.acceptors
    }
    /// Threads that own connections: read, parse, write.
    pub fn readers(&self) -> usize {
        self.readers
    }
    /// Threads that run handlers; 0: readers run them inline.
    pub fn workers(&self) -> usize {
        self.workers
    }
    /// How threads sharing one socket take turns accepting.
    pub fn accept(&self) -> AcceptStrategy {
        self.accept
    }
    /// How acceptors choose a reader.
    pub fn balance(&self) -> Balance {
        self.balance
    }
    /// The model this shape is the preset of, if any.
    pub fn preset_of(&self) -> Option<Model> {
        self.preset
    }

    /// The shape `model` stands for, with `threads` event-loop threads (readers in `dispatch`,
    /// loops in `shared` and `reuseport`) and `workers` handler threads (`pool`).
    pub fn preset(
        model: Model,
        threads: usize,
        workers: usize,
        accept: AcceptStrategy,
        balance: Balance,
    ) -> Result<Topology, TopologyError> {
        let (listeners, acceptors, readers, workers) = match model {
            Model::Single => (1, 0, 1, 0),
            Model::Dispatch => (1, 1, threads, 0),
            Model::Pool => (1, 0, 1, workers),
            Model::Shared => (1, 0, threads, 0),
            Model::Reuseport => (threads, 0, threads, 0),
        };
        Topology {
            listeners,
            acceptors,
            readers,
            workers,
            accept,
            balance,
            handshake: HandshakeBy::Readers,
            preset: Some(model),
        }
        .checked()
    }

    /// The shape, if it keeps the rules (see the module docs); else the one it breaks.
    fn checked(self) -> Result<Topology, TopologyError> {
        self.check().map(|()| self)
    }

    fn check(&self) -> Result<(), TopologyError> {
        for (role, n) in [
            ("listeners", self.listeners),
            ("acceptors", self.acceptors),
            ("readers", self.readers),
            ("workers", self.workers),
        ] {
            if n > MAX_PER_ROLE {
                return Err(TopologyError::TooMany { role, n });
            }
        }
        if self.listeners == 0 {
            return Err(TopologyError::None("listeners"));
        }
        if self.readers == 0 {
            return Err(TopologyError::None("readers"));
        }
        match self.acceptors {
            0 if self.listeners != 1 && self.listeners != self.readers => {
                Err(TopologyError::ReaderSockets {
                    listeners: self.listeners,
                    readers: self.readers,
                })
            }
            a if a > 0 && self.listeners != 1 && self.listeners != a => {
                Err(TopologyError::AcceptorSockets {
                    listeners: self.listeners,
                    acceptors: a,
                })
            }
            0 if self.handshake == HandshakeBy::Acceptors => {
                Err(TopologyError::HandshakeWithoutAcceptors)
            }
            _ => Ok(()),
        }
    }

    /// Threads that call accept: the acceptors, or else every reader.
    pub fn accepting_threads(&self) -> usize {
        if self.acceptors > 0 {
            self.acceptors
        } else {
            self.readers
        }
    }

    /// Whether several threads poll one socket, so that [`AcceptStrategy`] applies.
    pub fn shares_a_socket(&self) -> bool {
        self.listeners == 1 && self.accepting_threads() > 1
    }

    /// Whether acceptors choose among several readers, so that [`Balance`] applies.
    pub fn balances(&self) -> bool {
        self.acceptors > 0 && self.readers > 1
    }

    /// The preset's name, or `custom`.
    pub fn name(&self) -> &'static str {
        self.preset.map_or("custom", Model::name)
    }

    /// Name of acceptor `i`: `acceptor` in `dispatch` (its one acceptor), else `acceptor-i`.
    pub fn acceptor_name(&self, i: usize) -> String {
        if self.preset == Some(Model::Dispatch) && self.acceptors == 1 {
            "acceptor".to_string()
        } else {
            format!("acceptor-{i}")
        }
    }

    /// Name of reader `i`: `loop-i` when it also accepts, else `reader-i`.
    pub fn reader_name(&self, i: usize) -> String {
        if self.acceptors == 0 {
            format!("loop-{i}")
        } else {
            format!("reader-{i}")
        }
    }

    /// Name of worker `i`.
    pub fn worker_name(&self, i: usize) -> String {
        format!("worker-{i}")
    }

    /// Every thread this shape starts (before any blocking pool), in start order: workers,
    /// then acceptors, then readers.
    pub fn threads(&self) -> Vec<ThreadLayout> {
        let workers =
            (0..self.workers).map(|i| ThreadLayout::handler(self.worker_name(i), Role::Worker));
        let acceptors = (0..self.acceptors).map(|i| ThreadLayout {
            name: self.acceptor_name(i),
            role: Role::Acceptor,
            listens: true,
            accepts: true,
            reads: false,
            handles: false,
            handshakes: self.handshake == HandshakeBy::Acceptors,
        });
        let accepts = self.acceptors == 0;
        let readers = (0..self.readers).map(|i| ThreadLayout {
            name: self.reader_name(i),
            role: if accepts { Role::Loop } else { Role::Reader },
            listens: accepts,
            accepts,
            reads: true,
            handles: self.workers == 0,
            handshakes: false,
        });
        workers.chain(acceptors).chain(readers).collect()
    }

    /// Every thread a server of this shape starts for `app`: the layout the running server
    /// logs and reports.
    pub fn layout(&self, app: AppThreads) -> Vec<ThreadLayout> {
        let mut threads = self.threads();
        let (blocking, runtime) = match app {
            AppThreads::Handler { blocking } => (blocking, 0),
            // Without workers, a service's futures that are not ready at once finish on a
            // runtime of one thread per reader.
            AppThreads::Service if self.workers == 0 => (0, self.readers),
            AppThreads::Service => (0, 0),
        };
        threads.extend(
            (0..runtime).map(|i| ThreadLayout::handler(format!("async-{i}"), Role::Worker)),
        );
        threads.extend((0..blocking).map(|i| {
            ThreadLayout::handler(format!("{}-{i}", Role::Blocking.name()), Role::Blocking)
        }));
        threads
    }

    /// One line per thread, and how the sockets are shared: what `--dry-run` prints.
    pub fn describe(&self) -> String {
        self.describe_with(AppThreads::Handler { blocking: 0 })
    }

    /// [`Topology::describe`] for a server running `app`.
    pub fn describe_with(&self, app: AppThreads) -> String {
        let mut out = format!("topology {} ({self})\n", self.name());
        let sockets = if self.listeners == 1 {
            format!(
                "1 listening socket, accepted from by {} thread(s){}",
                self.accepting_threads(),
                if self.shares_a_socket() {
                    format!(" taking turns by {}", self.accept.name())
                } else {
                    String::new()
                }
            )
        } else {
            format!(
                "{} SO_REUSEPORT sockets on the port, one per accepting thread",
                self.listeners
            )
        };
        out.push_str(&sockets);
        out.push('\n');
        if self.balances() {
            out.push_str(&format!(
                "acceptors hand each connection to a reader by {}\n",
                self.balance.name()
            ));
        }
        match (self.workers, app) {
            (0, AppThreads::Service) => out.push_str(&format!(
                "readers poll the service's futures; those not ready at once finish on a runtime of {} thread(s)\n",
                self.readers
            )),
            (0, _) => {}
            (n, AppThreads::Service) => out.push_str(&format!(
                "readers hand requests to a runtime of {n} worker(s); answers go back in request order\n"
            )),
            (n, _) => out.push_str(&format!(
                "readers queue requests to {n} worker(s); answers go back in request order\n"
            )),
        }
        for t in self.layout(app) {
            out.push_str(&format!("  {t}\n"));
        }
        out
    }
}

/// What runs the application beside the shape's own threads, for [`Topology::layout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppThreads {
    /// A native handler, with a blocking pool of this many threads (see
    /// [`ServerBuilder::blocking_threads`](crate::ServerBuilder::blocking_threads)).
    Handler {
        /// Threads of the blocking pool.
        blocking: usize,
    },
    /// A tower service ([`ServerBuilder::bind_service`](crate::ServerBuilder::bind_service)):
    /// its runtime is the workers, or, without workers, one thread per reader.
    Service,
}

impl fmt::Display for Topology {
    /// `listeners=L acceptors=A readers=R workers=W`, then `accept=` where threads share a
    /// socket and `balance=` where acceptors choose among readers. Parses back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "listeners={} acceptors={} readers={} workers={}",
            self.listeners, self.acceptors, self.readers, self.workers
        )?;
        if self.shares_a_socket() {
            write!(f, " accept={}", self.accept.name())?;
        }
        if self.balances() {
            write!(f, " balance={}", self.balance.name())?;
        }
        if self.handshake != HandshakeBy::Readers {
            write!(f, " handshake={}", self.handshake.name())?;
        }
        Ok(())
    }
}

impl FromStr for Topology {
    type Err = TopologyError;

    /// [`Topology::parse`] with [`ParseDefaults::this_machine`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topology::parse(s, ParseDefaults::this_machine())
    }
}

impl Topology {
    /// A model name (its preset, `defaults.per_core` threads), or `key=value` words in any
    /// order, separated by spaces or commas; missing keys take `listeners=1 acceptors=0
    /// workers=0`, `defaults.per_core` readers and the default strategies.
    pub fn parse(s: &str, defaults: ParseDefaults) -> Result<Topology, TopologyError> {
        let ParseDefaults {
            per_core,
            accept,
            balance,
        } = defaults;
        if let Ok(model) = s.trim().parse::<Model>() {
            return Topology::preset(model, per_core, per_core, accept, balance);
        }
        let mut t = Topology {
            listeners: 1,
            acceptors: 0,
            readers: per_core,
            workers: 0,
            accept,
            balance,
            handshake: HandshakeBy::Readers,
            preset: None,
        };
        let mut seen: Vec<&str> = Vec::new();
        for word in s.split([' ', ',', '\t']).filter(|w| !w.is_empty()) {
            let (key, value) = word
                .split_once('=')
                .ok_or_else(|| TopologyError::NotKeyValue(word.to_string()))?;
            if seen.contains(&key) {
                return Err(TopologyError::Repeated(key.to_string()));
            }
            seen.push(key);
            let bad = |why| TopologyError::BadValue {
                key: key.to_string(),
                value: value.to_string(),
                why,
            };
            let count = || value.parse::<usize>().map_err(|_| bad("a whole number"));
            match key {
                "listeners" => t.listeners = count()?,
                "acceptors" => t.acceptors = count()?,
                "readers" => t.readers = count()?,
                "workers" => t.workers = count()?,
                "accept" => {
                    t.accept = value.parse().map_err(|_| bad("exclusive, mutex or herd"))?
                }
                "balance" => {
                    t.balance = value
                        .parse()
                        .map_err(|_| bad("round-robin, least-conns or p2c"))?
                }
                "handshake" => {
                    t.handshake = match value {
                        "readers" => HandshakeBy::Readers,
                        "acceptors" => HandshakeBy::Acceptors,
                        _ => return Err(bad("readers or acceptors")),
                    }
                }
                _ => return Err(TopologyError::UnknownKey(key.to_string())),
            }
        }
        t.checked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Topology {
        s.parse().unwrap()
    }

    fn four_cores() -> ParseDefaults {
        ParseDefaults {
            per_core: 4,
            ..ParseDefaults::this_machine()
        }
    }

    #[test]
    fn keys_in_any_order_with_defaults_for_the_rest() {
        let t = parse("readers=5 listeners=1 workers=8 acceptors=3");
        assert_eq!(
            (t.listeners, t.acceptors, t.readers, t.workers),
            (1, 3, 5, 8)
        );
        let t = parse("readers=2");
        assert_eq!((t.listeners, t.acceptors, t.workers), (1, 0, 0));
        assert_eq!(parse(&t.to_string()), t, "Display parses back");
    }

    #[test]
    fn display_names_accept_and_balance_only_where_they_apply() {
        assert_eq!(
            parse("listeners=2 readers=2").to_string(),
            "listeners=2 acceptors=0 readers=2 workers=0"
        );
        assert_eq!(
            parse("acceptors=3 readers=5 balance=p2c accept=mutex").to_string(),
            "listeners=1 acceptors=3 readers=5 workers=0 accept=mutex balance=p2c"
        );
    }

    #[test]
    fn presets_are_todays_models() {
        let p = |m| Topology::preset(m, 4, 3, AcceptStrategy::Mutex, Balance::P2c).unwrap();
        let names = |t: Topology| t.threads().into_iter().map(|l| l.name).collect::<Vec<_>>();
        assert_eq!(names(p(Model::Single)), ["loop-0"]);
        assert_eq!(
            names(p(Model::Dispatch)),
            ["acceptor", "reader-0", "reader-1", "reader-2", "reader-3"]
        );
        assert_eq!(
            names(p(Model::Pool)),
            ["worker-0", "worker-1", "worker-2", "loop-0"]
        );
        assert_eq!(names(p(Model::Shared)).len(), 4);
        assert_eq!(p(Model::Reuseport).listeners, 4);
        let shared = Topology::parse("shared", four_cores()).unwrap();
        assert_eq!(
            (shared.readers(), shared.preset_of()),
            (4, Some(Model::Shared))
        );
        assert_eq!(parse("readers=3").readers(), 3);
        assert_eq!(
            Topology::parse("acceptors=1", four_cores())
                .unwrap()
                .readers(),
            4,
            "readers default to the cores the caller says"
        );
    }

    #[test]
    fn general_shapes_name_every_role() {
        let t = parse("listeners=1 acceptors=2 readers=2 workers=1");
        let names: Vec<_> = t.threads().into_iter().map(|l| l.name).collect();
        assert_eq!(
            names,
            [
                "worker-0",
                "acceptor-0",
                "acceptor-1",
                "reader-0",
                "reader-1"
            ]
        );
        assert!(t.describe().contains("acceptors hand each connection"));
    }

    #[test]
    fn every_rule_has_its_error() {
        let err = |s: &str| s.parse::<Topology>().unwrap_err().to_string();
        assert!(err("listeners=2 readers=3").contains("listeners must be 1"));
        assert!(err("listeners=2 acceptors=3 readers=1").contains("equal acceptors"));
        assert!(err("readers=0").contains("at least one reader"));
        assert!(err("listeners=0 readers=1").contains("at least one listener"));
        assert!(err("readers=5000").contains("at most"));
        let parse_err = |s: &str| s.parse::<Topology>().unwrap_err().to_string();
        assert!(parse_err("threads=2").contains("unknown key"));
        assert!(parse_err("readers=two").contains("whole number"));
        assert!(parse_err("readers").contains("key=value"));
        assert!(parse_err("readers=1 readers=2").contains("twice"));
        assert!(parse_err("accept=polite").contains("exclusive"));
        assert!(parse_err("handshake=workers").contains("readers or acceptors"));
        assert!(parse_err("readers=2 handshake=acceptors").contains("acceptors=0"));
        let t = parse("acceptors=1 readers=2 handshake=acceptors");
        assert_eq!(t.handshake(), HandshakeBy::Acceptors);
        assert_eq!(
            t.to_string(),
            "listeners=1 acceptors=1 readers=2 workers=0 balance=round-robin handshake=acceptors"
        );
        assert_eq!(t.to_string().parse::<Topology>().unwrap(), t);
    }

    #[test]
    fn every_way_to_make_one_keeps_the_rules() {
        let broken = [
            (2, 0, 3, 0),
            (2, 3, 1, 0),
            (1, 0, 0, 0),
            (0, 0, 1, 0),
            (1, 0, 5000, 0),
        ];
        for (l, a, r, w) in broken {
            let text = format!("listeners={l} acceptors={a} readers={r} workers={w}");
            let new = Topology::new(l, a, r, w).unwrap_err();
            assert_eq!(text.parse::<Topology>().unwrap_err(), new, "{text}");
            assert_eq!(Topology::parse(&text, four_cores()).unwrap_err(), new);
        }
        assert!(
            Topology::preset(Model::Dispatch, 0, 0, AcceptStrategy::Herd, Balance::P2c).is_err()
        );
        assert!(Topology::preset(
            Model::Reuseport,
            2000,
            0,
            AcceptStrategy::Herd,
            Balance::P2c
        )
        .is_err());
        assert!(Topology::parse(
            "shared",
            ParseDefaults {
                per_core: 0,
                ..four_cores()
            }
        )
        .is_err());
        let ok = Topology::new(1, 3, 5, 8)
            .unwrap()
            .with_accept(AcceptStrategy::Mutex);
        assert_eq!(ok.to_string().parse::<Topology>().unwrap(), ok);
    }
}
