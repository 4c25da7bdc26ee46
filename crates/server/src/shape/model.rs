//! The named parts of a shape: the five models it may be a preset of, how threads sharing
//! a socket take turns, how acceptors choose a reader. Their names on the command line
//! (`FromStr`, `Display`) are given with the other settings' names, in `config`.

/// The five connection architectures (docs/architecture.md §1), presets of a
/// [`Topology`](crate::Topology). Each is a preset of who listens, who
/// accepts, who reads and who runs the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// Node.js: one thread listens, accepts, reads, writes and handles.
    Single,
    /// memcached: one acceptor thread hands connections to N reader threads.
    Dispatch,
    /// RAMCloud: one thread accepts and reads; M workers run handlers; responses are written
    /// back in request order.
    Pool,
    /// nginx: N threads accept on one shared listening socket.
    Shared,
    /// Socket sharding: N threads, each with its own SO_REUSEPORT socket on the port.
    Reuseport,
}

impl AcceptStrategy {
    /// Every strategy.
    pub const ALL: [AcceptStrategy; 3] = [
        AcceptStrategy::Exclusive,
        AcceptStrategy::Mutex,
        AcceptStrategy::Herd,
    ];
}

impl Balance {
    /// Every balancer.
    pub const ALL: [Balance; 3] = [Balance::RoundRobin, Balance::LeastConns, Balance::P2c];
}

impl Model {
    /// Every model, in the order the docs present them.
    pub const ALL: [Model; 5] = [
        Model::Single,
        Model::Dispatch,
        Model::Pool,
        Model::Shared,
        Model::Reuseport,
    ];

    /// The name used on the command line and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Model::Single => "single",
            Model::Dispatch => "dispatch",
            Model::Pool => "pool",
            Model::Shared => "shared",
            Model::Reuseport => "reuseport",
        }
    }
}

/// How the threads of the `shared` model take turns on the one listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptStrategy {
    /// `EPOLLEXCLUSIVE`: the kernel wakes one waiting thread per connection. Re-registered
    /// every [`EXCLUSIVE_ROTATE`](crate::roles::acceptor::EXCLUSIVE_ROTATE) accepts, as nginx does,
    /// because the kernel favours the most recently waiting thread.
    Exclusive,
    /// nginx's accept_mutex: only the thread holding the lock polls the listener.
    Mutex,
    /// Every thread polls the listener and all wake for each connection: the thundering
    /// herd, kept so it can be measured.
    Herd,
}

impl AcceptStrategy {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            AcceptStrategy::Exclusive => "exclusive",
            AcceptStrategy::Mutex => "mutex",
            AcceptStrategy::Herd => "herd",
        }
    }
}

/// How the `dispatch` acceptor picks a reader for a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// memcached's rotation, blind to load.
    RoundRobin,
    /// Envoy's exact balance: the reader with the fewest open plus queued connections.
    LeastConns,
    /// HAProxy's power of two choices: two random readers, the less loaded one.
    P2c,
}

impl Balance {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round-robin",
            Balance::LeastConns => "least-conns",
            Balance::P2c => "p2c",
        }
    }
}
