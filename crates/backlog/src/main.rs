//! `backlog`: serve HTTP/1.1 with the connection architecture of your choice.
//!
//! The binary is a thin layer over the `server` library: it parses flags (clap), sets up
//! logging, turns SIGINT/SIGTERM into a graceful shutdown, and prints the per-thread table
//! on exit. Exit codes: 0 after a clean shutdown, 2 for a bad flag or an address in use.

/// `eprintln!` that never panics. stderr may be a closed pipe (a log collector that died, a
/// terminal that went away): a failed write must not take the process down or stop a drain.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `println!` that never panics (a reader of our stdout that went away, `| head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod app;
mod comments;
mod config_file;
mod inherit;
mod labcmd;
mod logging;
mod supervisor;
mod top;

use anyhow::Context;
use backlog_server::{
    AcceptStrategy, AppThreads, Balance, BusinessPriority, HandshakeBy, InlineAnswers, Io, Model,
    QueueTiming, Server, ServerError,
};
use clap::builder::TypedValueParser;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "backlog",
    version,
    about = "An HTTP/1.1 server whose connection architecture is a run-time choice"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP/1.1.
    Serve(Box<ServeArgs>),
    /// Measure the models side by side (and nginx, Node) and write a report.
    Lab(labcmd::LabArgs),
    /// Zero-downtime restart of a `serve --processes` supervisor: a new generation of
    /// workers on the same sockets, then the old one drains; a single process reloads its
    /// TLS certificates (same as SIGHUP).
    Reload {
        /// The file `serve --pid-file` wrote.
        #[arg(long)]
        pid_file: std::path::PathBuf,
    },
    /// Live terminal view of a server's queues and threads (needs its --admin endpoint).
    Top {
        /// The server's admin address.
        #[arg(default_value = "127.0.0.1:9901")]
        addr: String,
    },
    /// The lab's floor: a minimal server that only reads, counts heads and writes.
    #[command(hide = true)]
    AnchorFloor {
        #[command(flatten)]
        at: AnchorArgs,
        #[arg(long, default_value = "epoll", value_parser = named(&Io::ALL, |i| i.name()))]
        io: Io,
    },
    /// The lab's axum anchor: its app on `axum::serve` (built with `--features axum`).
    #[cfg(feature = "axum")]
    #[command(hide = true)]
    AnchorAxum {
        #[command(flatten)]
        at: AnchorArgs,
        /// Set TCP_NODELAY on each connection (`axum::serve` leaves it off).
        #[arg(long)]
        nodelay: bool,
    },
    /// The lab's hyper 1.x anchor (built with `--features hyper`).
    #[cfg(feature = "hyper")]
    #[command(hide = true)]
    AnchorHyper {
        #[command(flatten)]
        at: AnchorArgs,
    },
    /// The lab's actix-web peer, HttpArena's endpoints (built with `--features actix`).
    #[cfg(feature = "actix")]
    #[command(hide = true)]
    AnchorActix {
        #[command(flatten)]
        at: AnchorArgs,
    },
    /// The lab's may-minihttp peer, HttpArena's endpoints (built with `--features minihttp`).
    #[cfg(feature = "minihttp")]
    #[command(hide = true)]
    AnchorMinihttp {
        #[command(flatten)]
        at: AnchorArgs,
    },
}

/// Where and how wide a lab anchor serves.
#[derive(clap::Args)]
struct AnchorArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long, default_value_t = 4096)]
    backlog: i32,
    /// Which endpoints: the demo's `/` or HttpArena's `/baseline11` and `/pipeline`.
    #[arg(long, default_value = "demo", value_parser = named(&lab::engine::Endpoints::ALL, |e| e.name()))]
    endpoints: lab::engine::Endpoints,
    /// Serve TLS with this certificate (the hyper anchor only).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

impl AnchorArgs {
    /// The certificate files, when given.
    fn tls(&self) -> Option<lab::tls::CertFiles> {
        Some(lab::tls::CertFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
        })
    }
}

#[derive(Parser)]
struct ServeArgs {
    /// Address to listen on: IP:PORT, or a host name (`localhost:8080`) resolved once at
    /// start, its first address taken. `0.0.0.0` or `[::]` expose every interface.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = resolve_listen)]
    listen: SocketAddr,
    /// Who listens, accepts, reads and handles, as one of five presets.
    #[arg(long, default_value = "reuseport", value_parser = named(&Model::ALL, |m| m.name()))]
    model: Model,
    /// Any shape instead of a preset: "listeners=1 acceptors=3 readers=5 workers=8" (keys in
    /// any order; missing: listeners=1 acceptors=0 workers=0, readers one per core; also
    /// accept= and balance=, else --accept and --balance).
    #[arg(long, conflicts_with_all = ["model", "threads", "workers"])]
    topology: Option<String>,
    /// Print the thread layout the shape means, and exit.
    #[arg(long)]
    dry_run: bool,
    /// Read flags from this TOML file (keys are the flags' names: `model = "pool"`,
    /// `max-body-bytes = "1MiB"`); flags on the command line win.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Print the effective configuration as TOML (a file for --config), and exit.
    #[arg(long)]
    print_config: bool,
    /// Event-loop threads (readers in dispatch, loops in shared and reuseport; single and
    /// pool run one); default: one per core.
    #[arg(long, value_parser = at_least_one)]
    threads: Option<usize>,
    /// Handler threads for the pool model (the others have none); default: one per core.
    #[arg(long, value_parser = at_least_one)]
    workers: Option<usize>,
    /// How shared-model threads take turns on the one socket.
    #[arg(long, default_value = "exclusive", value_parser = named(&AcceptStrategy::ALL, |a| a.name()))]
    accept: AcceptStrategy,
    /// How the dispatch acceptor picks a reader.
    #[arg(long, default_value = "round-robin", value_parser = named(&Balance::ALL, |b| b.name()))]
    balance: Balance,
    /// listen(2) backlog; the kernel clamps it to net.core.somaxconn.
    #[arg(long, default_value_t = 4096)]
    backlog: u32,
    /// Set TCP_DEFER_ACCEPT: connections reach the accept queue only once data arrives.
    #[arg(long)]
    defer_accept: bool,
    /// Measure how long connections and requests wait in the kernel's accept and receive
    /// queues (receive timestamps; timed reads go through recvmsg, the same one syscall).
    /// on: every read; sampled: every connection's first request, every read of a round after
    /// a wait of 1 ms or more (an idle loop) or more than 100 ms after its loop's previous
    /// round began (a held loop), one in 16 of the rest counted for 16 (epoll; io_uring times
    /// every read); off: none.
    #[arg(long, default_value = "sampled", value_parser = named(&QueueTiming::ALL, |q| q.name()))]
    queue_timing: QueueTiming,
    /// The I/O interface of every event loop: epoll (readiness), uring (io_uring
    /// completions: multishot accept and receive, sends submitted with the wait; exits 2
    /// naming the cause where the kernel cannot), or auto (io_uring where available; logs
    /// its choice).
    #[arg(long, env = "BACKLOG_IO", default_value = "epoll", value_parser = named(&Io::ALL, |i| i.name()))]
    io: Io,
    /// The built-in application.
    #[arg(long, value_enum, default_value_t = AppArg::Hello)]
    app: AppArg,
    /// pool: capacity of the request queue before reading pauses.
    #[arg(long, default_value_t = 1024)]
    queue_depth: usize,
    /// In a shape with workers, how the scheduler treats them against the readers: normal
    /// (its defaults), or background (workers in the SCHED_IDLE class while the business
    /// keeps up, readers on short slices: a reader that wakes takes the core from a handler
    /// at once, so short requests do not wait behind long ones; a worker returns to the
    /// normal class while more work waits than one piece per worker).
    #[arg(long, default_value = "normal", value_parser = named(&BusinessPriority::ALL, |p| p.name()))]
    business_priority: BusinessPriority,
    /// In a shape with workers, whether a reader answers cheap routes itself: never, or
    /// learned (a route whose calls or first polls the workers saw ready within 50 µs of CPU
    /// 16 times in a row is answered on the reader, with no hop; one that runs long or
    /// waits there goes back to the workers).
    #[arg(long, default_value = "never", value_parser = named(&InlineAnswers::ALL, |p| p.name()))]
    inline_answers: InlineAnswers,
    /// With --inline-answers learned: the CPU a route's first poll may take and still be
    /// answered on a reader (which holds the reader's other connections that long).
    #[arg(long, default_value = "50us", value_parser = parse_duration)]
    inline_limit: Duration,
    /// On SIGTERM/SIGINT, how long to wait for requests in progress (e.g. 500ms, 2s, 1m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Request line plus header fields (e.g. 8KiB); past it 431.
    #[arg(long, default_value = "8KiB", value_parser = parse_size)]
    max_header_bytes: u64,
    /// Number of header fields; past it 431 (at most 256).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=256))]
    max_headers: u64,
    /// Request target length (e.g. 8KiB); past it 414.
    #[arg(long, default_value = "8KiB", value_parser = parse_size)]
    max_uri_bytes: u64,
    /// Request body after decoding (e.g. 1MiB); past it 413.
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    max_body_bytes: u64,
    /// A request head must be complete this long after it starts; past it 408 and close.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    header_timeout: Duration,
    /// While reading a body, the longest wait for more of it; past it 408 and close.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    body_timeout: Duration,
    /// Keep-alive connections idle this long are closed.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// A client that takes none of its pending output for this long is cut off.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    write_timeout: Duration,
    /// Open connections past which accepting pauses (default: 90% of the fd limit).
    #[arg(long)]
    max_conns: Option<usize>,
    /// Serve /metrics, /debug/state and /debug/connections here (e.g. 127.0.0.1:9901, or
    /// localhost:9901).
    #[arg(long, value_parser = resolve_listen)]
    admin: Option<SocketAddr>,
    /// Allow --admin on a non-loopback address.
    #[arg(long)]
    admin_public: bool,
    /// Worker processes, each running the model with its threads, under a supervisor that
    /// holds the sockets, restarts workers that die and reloads on SIGHUP.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    processes: u64,
    /// Write the server's (the supervisor's) pid here, for `backlog reload`.
    #[arg(long)]
    pid_file: Option<std::path::PathBuf>,
    /// Speak TLS (1.2 and 1.3, ALPN http/1.1) with this certificate chain (PEM, leaf
    /// first). SIGHUP or `backlog reload` reads it and --tls-key again, dropping no
    /// connection.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1); keep it mode 600.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<std::path::PathBuf>,
    /// Who runs TLS handshakes: readers (the thread that will serve the connection) or
    /// acceptors (they complete each handshake and hand the session to a reader; needs a
    /// shape with acceptors, e.g. --model dispatch). Same as handshake= in --topology.
    #[arg(long, value_parser = named(&HandshakeBy::ALL, |h| h.name()))]
    handshake: Option<HandshakeBy>,
    /// Where the embedded store (SQLite) keeps comments and idempotency keys.
    #[arg(long, env = "BACKLOG_DATA", default_value = "./backlog-data")]
    data: std::path::PathBuf,
    /// A shared store instead of SQLite: postgres://user@host:port/db.
    #[arg(long)]
    store: Option<String>,
    /// How long a stored response answers retries with the same Idempotency-Key.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    idempotency_ttl: Duration,
    /// How long a claimed key stays in flight before a retry may take it over (a crashed
    /// server's claims expire after this).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    idempotency_lease: Duration,
    /// Scope keys per client by this request header (keys are global without it).
    #[arg(long)]
    idempotency_scope_header: Option<String>,
    /// Answer 400 to POST /comments without an Idempotency-Key.
    #[arg(long)]
    require_idempotency_key: bool,
    /// Threads that run database calls off the event loops and workers (default: 4 when
    /// the app has any).
    #[arg(long)]
    blocking_threads: Option<usize>,
    /// Hold each POST /comments this long inside its transaction (crash tests, the lab).
    #[arg(long, default_value = "0s", value_parser = parse_duration, hide = true)]
    comment_delay: Duration,
}

/// A flag that takes one of a library type's names, listed in `--help`.
/// The process-wide settings a server wants and a library must not make behind its
/// caller's back: the soft RLIMIT_NOFILE raised to the hard one (a server's connections are
/// descriptors), and the descriptor table sized for all of them at start — the kernel grows
/// it by doubling, and in a process with threads each growth waits for an RCU grace period,
/// stalling accept ~17 ms in the middle of a burst.
fn prepare_descriptors() {
    let before = sys::rlimit::nofile();
    let limit = sys::rlimit::raise_nofile();
    if limit > before {
        tracing::debug!(
            from = before,
            to = limit,
            "raised RLIMIT_NOFILE to the hard limit"
        );
    }
    let table = usize::try_from(limit).unwrap_or(usize::MAX).min(1 << 20);
    if let Err(err) = sys::fd::reserve_table(table) {
        tracing::debug!(%err, table, "could not pre-size the descriptor table");
    }
}

/// A thread count: a number of at least 1 (0 threads would serve nothing).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(err) => Err(err.to_string()),
    }
}

/// `--listen`: an IP address and port, or a host name and port resolved now. Every example
/// says `localhost`, so it is taken (its first address: 127.0.0.1 where /etc/hosts lists
/// it first), and the start line shows the address bound.
fn resolve_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    use std::net::ToSocketAddrs;
    let mut addrs = text.to_socket_addrs().map_err(|err| {
        format!("not IP:PORT, and {text:?} does not resolve to an address ({err})")
    })?;
    addrs
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

fn named<T>(all: &[T], name: fn(&T) -> &'static str) -> impl TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Display,
{
    let names: Vec<&'static str> = all.iter().map(name).collect();
    clap::builder::PossibleValuesParser::new(names)
        .try_map(|n| n.parse::<T>().map_err(|e| e.to_string()))
}

#[derive(Clone, Copy, ValueEnum)]
enum AppArg {
    Hello,
    Echo,
    /// HttpArena's engine endpoints: `/baseline11` (GET and POST) and `/pipeline`.
    Arena,
    /// The lab's axum app (`/` and `/work`), a plain axum `Router` run as a tower service
    /// (built with `--features axum`).
    Axum,
}

/// An anchor that serves one set of endpoints refuses to be asked for the other.
#[cfg(any(feature = "axum", feature = "actix", feature = "minihttp"))]
fn serves_only(
    at: &AnchorArgs,
    endpoints: lab::engine::Endpoints,
    who: &str,
) -> anyhow::Result<()> {
    if at.endpoints != endpoints {
        anyhow::bail!("{who} serves the {} endpoints only", endpoints.name());
    }
    plain_only(at, who)
}

/// Only the hyper anchor speaks TLS: the others refuse a certificate rather than serve
/// plain HTTP to a client that expects TLS.
fn plain_only(at: &AnchorArgs, who: &str) -> anyhow::Result<()> {
    if at.tls().is_some() {
        anyhow::bail!("{who} does not speak TLS (only anchor-hyper takes --tls-cert)");
    }
    Ok(())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|err| format!("{err} (use e.g. 500ms, 2s, 1m)"))
}

fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|err| format!("{err} (use e.g. 8192, 8KiB, 1MiB)"))
}

fn main() -> ExitCode {
    let argv = match config_file::merge(Cli::command(), std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(err) => {
            say!("backlog serve: {err}");
            return ExitCode::from(2);
        }
    };
    let matches = match Cli::command().try_get_matches_from(&argv) {
        Ok(matches) => matches,
        Err(err) => return usage_error(err),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    logging::init(inherit::worker_label());
    match cli.command {
        Command::Lab(args) => match labcmd::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                say!("backlog lab: {err:#}");
                ExitCode::FAILURE
            }
        },
        Command::AnchorFloor { at, io } => anchor_exit(
            "anchor-floor",
            plain_only(&at, "the floor").and_then(|()| {
                lab::floor::run(at.listen, at.threads, at.backlog, io, at.endpoints)
            }),
            ExitCode::from(2),
        ),
        #[cfg(feature = "axum")]
        Command::AnchorAxum { at, nodelay } => anchor_exit(
            "anchor-axum",
            serves_only(&at, lab::engine::Endpoints::Demo, "the axum anchor")
                .and_then(|()| lab::anchor_axum::run(at.listen, at.threads, at.backlog, nodelay)),
            ExitCode::FAILURE,
        ),
        #[cfg(feature = "actix")]
        Command::AnchorActix { at } => anchor_exit(
            "anchor-actix",
            serves_only(&at, lab::engine::Endpoints::Arena, "the actix-web peer")
                .and_then(|()| lab::anchor_actix::run(at.listen, at.threads, at.backlog)),
            ExitCode::FAILURE,
        ),
        #[cfg(feature = "minihttp")]
        Command::AnchorMinihttp { at } => anchor_exit(
            "anchor-minihttp",
            serves_only(&at, lab::engine::Endpoints::Arena, "the may-minihttp peer")
                .and_then(|()| lab::anchor_minihttp::run(at.listen, at.threads)),
            ExitCode::FAILURE,
        ),
        #[cfg(feature = "hyper")]
        Command::AnchorHyper { at } => anchor_exit(
            "anchor-hyper",
            lab::anchor_hyper::run(
                at.listen,
                at.threads,
                at.backlog,
                at.endpoints,
                at.tls().as_ref(),
            ),
            ExitCode::FAILURE,
        ),
        Command::Reload { pid_file } => match reload(&pid_file) {
            Ok(pid) => {
                say!("backlog reload: SIGHUP sent to {pid}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                say!("backlog reload: {err:#}");
                ExitCode::FAILURE
            }
        },
        Command::Top { .. } if !top::has_terminal() => {
            say!("backlog top: needs a terminal (stdin and stdout); for a one-off reading, GET /debug/state or /metrics from the admin address");
            ExitCode::from(2)
        }
        Command::Top { addr } => match top::run(&addr) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                say!("backlog top: {err:#}");
                ExitCode::FAILURE
            }
        },
        Command::Serve(args) if args.print_config => {
            let cmd = Cli::command();
            let (Some(serve), Some(given)) = (
                cmd.find_subcommand("serve"),
                matches.subcommand_matches("serve"),
            ) else {
                return ExitCode::FAILURE;
            };
            outln!("{}", config_file::render(serve, given).trim_end());
            ExitCode::SUCCESS
        }
        Command::Serve(args) => match serve(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                let code = match err.downcast_ref::<ServerError>() {
                    Some(ServerError::AddrInUse { .. })
                    | Some(ServerError::Bind { .. })
                    | Some(ServerError::Uring(_))
                    | Some(ServerError::Config(_)) => 2,
                    _ => 1,
                };
                say!("backlog: {err:#}");
                ExitCode::from(code)
            }
        },
    }
}

/// clap's errors span several lines; print one (help and version go out as they are).
fn usage_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    let text = err.render().to_string();
    let line: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information")
        })
        .collect();
    say!("backlog: {}", line.join(" ").trim_start_matches("error: "));
    ExitCode::from(2)
}

/// Send SIGHUP to the pid in `pid_file`.
fn reload(pid_file: &std::path::Path) -> anyhow::Result<u32> {
    let text = std::fs::read_to_string(pid_file)
        .with_context(|| format!("reading {}", pid_file.display()))?;
    let pid: u32 = text
        .trim()
        .parse()
        .with_context(|| format!("{} does not hold a pid", pid_file.display()))?;
    sys::process::signal(pid, signal_hook::consts::SIGHUP)
        .with_context(|| format!("signalling {pid}"))?;
    Ok(pid)
}

/// Run as the supervisor of `args.processes` workers.
fn supervise(
    args: &ServeArgs,
    cfg: &backlog_server::Config,
    inherited: Option<Vec<backlog_server::Listener>>,
) -> anyhow::Result<()> {
    // systemd's sockets are shared by every worker as they are; otherwise a shape with
    // several listeners gets that many SO_REUSEPORT sockets per worker.
    let shape = cfg.topology;
    let reuseport = shape.listeners() > 1 && inherited.is_none();
    let opts = supervisor::Options {
        processes: args.processes as usize,
        per_worker: if reuseport { shape.listeners() } else { 1 },
        reuseport,
        // Decided by the shape, never by a preset's name: acceptors handing connections to
        // readers from one socket is `dispatch` whatever it was called, and across processes
        // the supervisor plays that acceptor.
        dispatch: shape.acceptors() > 0 && shape.listeners() == 1,
        args: std::env::args_os().skip(1).collect(),
        pid_file: args.pid_file.clone(),
    };
    let signals = supervisor::catch_signals()?;
    let listeners = match inherited {
        Some(l) => l,
        None => supervisor::bind(cfg, &opts)?,
    };
    run_supervisor(args, opts, listeners, signals)
}

fn run_supervisor(
    args: &ServeArgs,
    opts: supervisor::Options,
    listeners: Vec<backlog_server::Listener>,
    signals: signal_hook::iterator::Signals,
) -> anyhow::Result<()> {
    let addr = listeners
        .first()
        .context("no socket to serve")?
        .local_addr();
    tracing::info!(
        %addr,
        processes = opts.processes,
        sockets = listeners.len(),
        "backlog supervisor: sockets bound; starting workers"
    );
    if opts.reuseport
        && std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req")
            .is_ok_and(|v| v.trim() == "0")
    {
        // Restarts and reloads never close a socket, but shutdown must; a connection that
        // lands in a socket's queue between its worker's last accept and the close is reset
        // unless the kernel moves it to a sibling.
        tracing::info!("net.ipv4.tcp_migrate_req is 0: at shutdown, a connection queued on a reuseport socket as it closes is reset; set it to 1 to have the kernel move it to a sibling");
    }
    let sup = supervisor::Supervisor::new(opts, listeners)?;
    let admin = match args.admin {
        Some(addr) => {
            let processes = sup.processes();
            let procs = move || processes.lock().map(|p| p.clone()).unwrap_or_default();
            Some(
                Server::builder()
                    .listen(addr)
                    .model(Model::Single)
                    .label("admin")
                    .max_conns(256)
                    .timeouts(admin::admin_timeouts())
                    .bind(admin::fleet::app(procs, sup.listeners()))
                    .context("starting the admin listener")?,
            )
        }
        None => None,
    };
    let result = sup.run(signals);
    if let Some(admin) = admin {
        admin.stop();
    }
    result
}

/// Start the built-in app on `builder`: `hello` with its store (which purges its expired
/// idempotency keys by itself), or `echo`.
fn bind_app(args: &ServeArgs, builder: backlog_server::ServerBuilder) -> anyhow::Result<Server> {
    match args.app {
        AppArg::Hello => {
            let db = app::Db::open(args.store.as_deref(), &args.data)
                .map_err(|err| ServerError::Config(format!("store: {err}")))?;
            let kind = db.kind();
            let cfg = idempotency::IdempotencyConfig {
                ttl: args.idempotency_ttl,
                lease: args.idempotency_lease,
                scope_header: args.idempotency_scope_header.clone(),
                require_key: args.require_idempotency_key,
                ..Default::default()
            };
            let builder = match args.blocking_threads {
                Some(n) => builder.blocking_threads(n),
                None => builder,
            };
            let app = app::hello(&db, cfg, args.comment_delay)
                .map_err(|err| ServerError::Config(format!("store: {err}")))?;
            let server = builder.bind(app)?;
            tracing::info!(
                store = kind,
                "comments and idempotency keys stored in {kind}"
            );
            Ok(server)
        }
        AppArg::Echo => Ok(builder.bind_service(app::Echo)?),
        AppArg::Arena => Ok(builder.bind(app::arena())?),
        #[cfg(feature = "axum")]
        AppArg::Axum => Ok(builder.bind_service(lab::anchor_axum::router())?),
        #[cfg(not(feature = "axum"))]
        AppArg::Axum => Err(ServerError::Config(
            "--app axum: this backlog was built without the `axum` feature (cargo build --release --features axum)".into(),
        )
        .into()),
    }
}

/// How a lab anchor's run ends: 0, or its error on stderr and `failure`.
fn anchor_exit(name: &str, result: anyhow::Result<()>, failure: ExitCode) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            say!("backlog {name}: {err:#}");
            failure
        }
    }
}

/// Catch SIGINT/SIGTERM (and, in a supervised worker, the parent-death signal) from now on.
/// Done before any socket serves: a signal that comes while the server starts is held for
/// [`signal_thread`], not left to the default action that would end the process undrained.
fn catch_signals(supervised: bool) -> anyhow::Result<signal_hook::iterator::Signals> {
    let mut wanted = vec![
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ];
    if supervised {
        wanted.push(inherit::PARENT_DEATH_SIGNAL);
    }
    signal_hook::iterator::Signals::new(&wanted).context("installing signal handlers")
}

/// The thread that turns SIGINT/SIGTERM (and, in a supervised worker, the parent-death
/// signal) into a graceful stop of `servers`: the first starts the drain; an operator's second
/// exits at once; the parent-death notice, which comes once per exiting supervisor thread, may
/// start the drain but never counts as that second signal. SIGHUP reloads the TLS
/// certificates (a single process has nothing else to reload; `--processes` restarts its
/// workers instead, and they load the files anew).
fn signal_thread(
    mut signals: signal_hook::iterator::Signals,
    servers: Vec<backlog_server::ServerHandle>,
    tls: Option<std::sync::Arc<backlog_server::Tls>>,
) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut draining = false;
            let mut operator_signals = 0;
            for signal in signals.forever() {
                if signal == signal_hook::consts::SIGHUP {
                    match &tls {
                        Some(tls) => match tls.reload() {
                            Ok(()) => tracing::info!(
                                reloads = tls.reloads(),
                                "TLS certificates reloaded: new handshakes present them"
                            ),
                            Err(err) => tracing::error!(
                                %err,
                                "TLS reload failed; still serving the previous certificates"
                            ),
                        },
                        None => tracing::info!(
                            "SIGHUP: nothing to reload in one process (--processes restarts workers on SIGHUP)"
                        ),
                    }
                    continue;
                }
                if signal != inherit::PARENT_DEATH_SIGNAL {
                    operator_signals += 1;
                }
                if !draining {
                    // Shut down first: nothing before this may be able to fail.
                    draining = true;
                    for s in &servers {
                        s.shutdown();
                    }
                    tracing::info!(
                        signal,
                        "shutting down: no new connections, finishing requests in progress"
                    );
                } else if operator_signals >= 2 {
                    tracing::warn!(signal, "second signal: exiting now");
                    std::process::exit(1);
                }
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// A preset takes only the counts it has: `--threads` sets nothing in `single` and `pool`
/// (one event loop), `--workers` nothing but `pool`'s. Said once at start, rather than
/// serving a shape the flags seemed to ask for.
fn unused_counts(args: &ServeArgs, shape: &backlog_server::Topology) {
    if args.topology.is_some() {
        return;
    }
    let model = args.model.name();
    if let Some(n) = args.threads.filter(|&n| n > 1 && shape.readers() == 1) {
        tracing::warn!(
            model,
            "--threads {n} sets nothing here: {model} runs one event loop (shape: {shape}; \
             --topology for more readers)"
        );
    }
    if let Some(n) = args.workers.filter(|_| shape.workers() == 0) {
        tracing::warn!(
            model,
            "--workers {n} sets nothing here: {model} has no workers (shape: {shape})"
        );
    }
}

/// The server `serve`'s flags describe: its shape (a preset, or `--topology` with
/// `--accept`/`--balance` filling what it leaves out), limits and timeouts. A shape the rules
/// refuse is a configuration error (exit 2).
fn builder_from(args: &ServeArgs) -> anyhow::Result<backlog_server::ServerBuilder> {
    let mut builder = Server::builder()
        .listen(args.listen)
        .model(args.model)
        .accept(args.accept)
        .balance(args.balance)
        .backlog(args.backlog)
        .defer_accept(args.defer_accept)
        .queue_timing(args.queue_timing)
        .io(args.io)
        .queue_depth(args.queue_depth)
        .business_priority(args.business_priority)
        .inline_answers(args.inline_answers)
        .inline_limit(args.inline_limit)
        .drain_timeout(args.drain_timeout)
        .limits(backlog_server::Limits {
            max_header_bytes: args.max_header_bytes as usize,
            max_headers: args.max_headers as usize,
            max_uri_bytes: args.max_uri_bytes as usize,
            max_body_bytes: args.max_body_bytes,
        })
        .timeouts(backlog_server::Timeouts {
            header: args.header_timeout,
            body: args.body_timeout,
            idle: args.idle_timeout,
            write: args.write_timeout,
            ..backlog_server::Timeouts::default()
        });
    if let Some(n) = args.max_conns {
        builder = builder.max_conns(n);
    }
    if let Some(n) = args.threads {
        builder = builder.threads(n);
    }
    if let Some(n) = args.workers {
        builder = builder.workers(n);
    }
    if let Some(text) = &args.topology {
        // --accept and --balance stand for the keys the text leaves out.
        let defaults = backlog_server::topology::ParseDefaults {
            accept: args.accept,
            balance: args.balance,
            ..backlog_server::topology::ParseDefaults::this_machine()
        };
        let t = backlog_server::Topology::parse(text, defaults)
            .map_err(|err| ServerError::Config(format!("--topology: {err}")))?;
        builder = builder.topology(t);
    }
    if let Some(by) = args.handshake {
        builder = builder.handshake(by);
    }
    builder.shape()?;
    Ok(builder)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // A 1 MiB body's buffers go back to the kernel when freed, not into an arena for good.
    sys::memory::return_large_allocations(128 * 1024);
    let worker = inherit::worker_id()?;
    let inherited = inherit::listeners()?;
    let ready = inherit::Ready::take()?;
    if let Some((source, l)) = &inherited {
        tracing::info!(
            ?source,
            sockets = l.len(),
            addr = %l[0].local_addr(),
            worker = worker.as_deref().unwrap_or("-"),
            "serving on inherited sockets"
        );
    }
    let builder = builder_from(&args)?;
    let shape = builder.shape()?;
    // A supervisor's workers run with its flags: it has said so once for them all.
    if worker.is_none() {
        unused_counts(&args, &shape);
    }
    if args.dry_run {
        // The built-in hello app's database calls run on a blocking pool; echo is a service.
        let app = match args.app {
            AppArg::Hello => AppThreads::Handler {
                blocking: args
                    .blocking_threads
                    .unwrap_or(backlog_server::tuning::DEFAULT_BLOCKING_THREADS),
            },
            AppArg::Arena => AppThreads::Handler { blocking: 0 },
            AppArg::Echo | AppArg::Axum => AppThreads::Service,
        };
        outln!("{}", shape.describe_with(app).trim_end());
        if args.processes > 1 {
            outln!("× {} processes under a supervisor", args.processes);
        }
        return Ok(());
    }
    prepare_descriptors();
    // Refused before anything is bound, by a supervisor as by a single process.
    if let Some(addr) = args.admin {
        if !addr.ip().is_loopback() && !args.admin_public {
            return Err(ServerError::Config(format!(
                "--admin {addr} is not a loopback address; add --admin-public to expose it"
            ))
            .into());
        }
    }
    // Loaded before anything is bound, by a supervisor too (its workers load them again,
    // each generation the files as they are then): a bad certificate is a start-up error.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            backlog_server::Tls::from_pem_files(cert, key)
                .map_err(|err| ServerError::Config(format!("TLS: {err}")))?,
        ),
        _ => None,
    };
    if worker.is_none() && args.processes > 1 {
        let cfg = builder.config().clone();
        return supervise(&args, &cfg, inherited.map(|(_, l)| l));
    }
    let builder = match inherited {
        Some((_, listeners)) => builder.listeners(listeners),
        None => builder,
    };
    let builder = match &tls {
        Some(tls) => builder.tls(tls.clone()),
        None => builder,
    };
    let signals = catch_signals(worker.is_some())?;
    let server = bind_app(&args, builder)?;
    // The admin endpoint runs on backlog's own core: a single-model server whose one thread
    // is named `admin`, so scrapes never run on a serving thread.
    // A supervised worker's admin endpoint is its own, on an ephemeral loopback port; the
    // supervisor serves the address asked for, over every worker.
    let admin_addr = match (&worker, args.admin) {
        (Some(_), Some(_)) => Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        (_, a) => a,
    };
    let admin = match admin_addr {
        Some(addr) => Some(
            Server::builder()
                .listen(addr)
                .model(Model::Single)
                .label("admin")
                .max_conns(256)
                .timeouts(admin::admin_timeouts())
                .bind(admin::app(server.introspect()))
                .context("starting the admin listener")?,
        ),
        None => None,
    };
    if let Some(ready) = &ready {
        ready.send(admin.as_ref().map(|a| a.local_addr()))?;
    }
    let handles: Vec<backlog_server::ServerHandle> = std::iter::once(server.handle())
        .chain(admin.as_ref().map(|a| a.handle()))
        .collect();
    signal_thread(signals, handles, tls)?;
    // A supervisor writes its own; a single process writes its pid for `backlog reload`.
    let pid_file = args.pid_file.as_ref().filter(|_| worker.is_none());
    if let Some(path) = pid_file {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let stats = server.wait();
    if let Some(path) = pid_file {
        let _ = std::fs::remove_file(path);
    }
    if let Some(admin) = admin {
        admin.stop();
    }
    say!("{}", stats.table().trim_end());
    tracing::info!("stopped");
    Ok(())
}
