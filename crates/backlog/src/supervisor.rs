//! `--processes P`: a supervisor process that binds the listening sockets once and runs P
//! worker processes on them (each the chosen model with its threads), the way nginx's
//! master and Node's cluster primary do.
//!
//! The supervisor owns every listening socket for its whole life. Workers inherit them
//! across exec (`BACKLOG_FDS`), so a worker that crashes takes no socket with it: the
//! connections in its accept queue wait there for the replacement. `reuseport` gets one
//! SO_REUSEPORT socket per worker thread (P × threads), each worker its own slice; every
//! other model shares one socket between all workers (nginx's layout).
//!
//! Restarts and reloads never close a listener. `SIGHUP` (or `backlog reload`) starts a
//! new generation from the binary's path and the same arguments, waits until every new
//! worker says it serves, then sends the old generation SIGTERM: they stop accepting,
//! answer what they hold and exit, while the same sockets go on queueing for the new
//! generation. No socket is closed and rebound, so nothing queued is dropped — the known
//! failure of reloads that close an SO_REUSEPORT listener with connections in its queue.
//! SIGTERM/SIGINT are forwarded (graceful drain in every worker); a worker that dies is
//! restarted with back-off if it keeps dying, and each exit is logged with its cause.

use crate::inherit::{FDS_ENV, PASSED_ENV, READY_ENV, WORKER_ENV};
use admin::ProcessState;
use anyhow::Context;
use backlog_server::{Listener, Reuseport};
use crossbeam_channel::{Receiver, Sender};
use std::ffi::OsString;
use std::io::BufRead;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long a new generation may take to be ready before the reload is abandoned.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// A worker that ran this long before dying is restarted at once; sooner, with back-off.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// Attempts at starting a worker before the supervisor gives up, if none has ever served.
const START_ATTEMPTS: u32 = 3;
/// Longest back-off between restarts of a worker that keeps dying.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What the supervisor runs.
pub struct Options {
    /// Worker processes.
    pub processes: usize,
    /// Listeners each worker gets (threads for `reuseport`, else 1 shared by all).
    pub per_worker: usize,
    /// One socket for all (false), or `per_worker` SO_REUSEPORT sockets each (true).
    pub reuseport: bool,
    /// The supervisor accepts and passes each connection to a worker over a Unix socket
    /// (SCM_RIGHTS), round-robin: Node cluster's default, `dispatch` across processes.
    pub dispatch: bool,
    /// Arguments for a worker: the same `serve …` this process was started with.
    pub args: Vec<OsString>,
    /// Where the pid goes, for `backlog reload --pid-file`.
    pub pid_file: Option<PathBuf>,
}

/// The workers as the admin endpoint sees them, kept current by the supervisor loop.
pub type Processes = Arc<Mutex<Vec<ProcessState>>>;

enum Event {
    Signal(i32),
    Ready { pid: u32, admin: Option<SocketAddr> },
}

/// The listening sockets the supervisor holds.
pub type Sockets = Arc<RwLock<Vec<Listener>>>;

/// Workers taking passed connections now: (pid, the supervisor's end of its socket).
type Targets = Arc<Mutex<Vec<(u32, Arc<OwnedFd>)>>>;

struct Worker {
    /// The supervisor's end of the Unix socket connections are passed over (dispatch).
    conn_sock: Option<Arc<OwnedFd>>,
    child: Child,
    generation: u32,
    slot: usize,
    ready: bool,
    draining: bool,
    started: Instant,
    admin: Option<SocketAddr>,
}

struct Reload {
    old: u32,
    deadline: Instant,
}

/// A running supervisor.
pub struct Supervisor {
    opts: Options,
    exe: PathBuf,
    /// Shared with the dispatcher and the admin endpoint; emptied (closed) at shutdown.
    listeners: Sockets,
    workers: Vec<Worker>,
    generation: u32,
    reload: Option<Reload>,
    /// Slots waiting to be restarted, and when.
    restarts: Vec<(usize, Instant)>,
    /// Consecutive quick deaths per slot.
    failures: Vec<u32>,
    /// Some worker has served: until then, workers that die at start are a configuration
    /// error, not bad luck, and the supervisor gives up instead of retrying forever.
    ever_ready: bool,
    /// Why the supervisor gave up.
    fatal: Option<String>,
    stopping: bool,
    events: (Sender<Event>, Receiver<Event>),
    processes: Processes,
    targets: Targets,
}

impl Supervisor {
    /// Bind (or take over) the sockets; nothing is started yet.
    pub fn new(opts: Options, listeners: Vec<Listener>) -> anyhow::Result<Supervisor> {
        let exe = std::env::current_exe().context("locating the backlog binary")?;
        let failures = vec![0; opts.processes];
        Ok(Supervisor {
            opts,
            exe,
            listeners: Arc::new(RwLock::new(listeners)),
            workers: Vec::new(),
            generation: 1,
            reload: None,
            restarts: Vec::new(),
            failures,
            ever_ready: false,
            fatal: None,
            stopping: false,
            events: crossbeam_channel::unbounded(),
            processes: Processes::default(),
            targets: Arc::default(),
        })
    }

    /// The workers, for the admin endpoint.
    pub fn processes(&self) -> Processes {
        self.processes.clone()
    }

    /// The sockets it holds (for the admin endpoint's queue figures).
    pub fn listeners(&self) -> Sockets {
        self.listeners.clone()
    }

    /// Start the workers and supervise them until SIGTERM/SIGINT has drained them all.
    /// `signals` were caught by [`catch_signals`] before any socket was bound, so a signal
    /// that came meanwhile is handled now, never the default action.
    pub fn run(mut self, mut signals: signal_hook::iterator::Signals) -> anyhow::Result<()> {
        let tx = self.events.0.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for s in signals.forever() {
                    if tx.send(Event::Signal(s)).is_err() {
                        break;
                    }
                }
            })
            .context("starting the signal thread")?;
        if let Some(path) = &self.opts.pid_file {
            std::fs::write(path, format!("{}\n", std::process::id()))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let stop_dispatch = Arc::new(AtomicBool::new(false));
        let mut dispatch_thread = None;
        if self.opts.dispatch {
            let (listeners, targets, stop) = (
                self.listeners.clone(),
                self.targets.clone(),
                stop_dispatch.clone(),
            );
            dispatch_thread = Some(
                std::thread::Builder::new()
                    .name("dispatcher".into())
                    .spawn(move || dispatcher(&listeners, &targets, &stop))
                    .context("starting the dispatcher thread")?,
            );
        }
        for slot in 0..self.opts.processes {
            self.spawn(slot, self.generation)?;
        }
        let mut signals_seen = 0;
        loop {
            match self.events.1.recv_timeout(Duration::from_millis(50)) {
                Ok(Event::Signal(signal_hook::consts::SIGHUP)) => self.start_reload(),
                Ok(Event::Signal(signal)) => {
                    signals_seen += 1;
                    if signals_seen == 1 {
                        tracing::info!(signal, "shutting down: draining every worker");
                        self.restarts.clear();
                        // The dispatcher passes out what is queued and stops.
                        stop_dispatch.store(true, Ordering::Relaxed);
                        if let Some(t) = dispatch_thread.take() {
                            let _ = t.join();
                        }
                        self.stopping = true;
                        self.update_targets();
                        // Let go of the sockets before the workers do: each worker takes
                        // what is queued as it closes its copy, and once the last copy is
                        // closed the kernel refuses new connections.
                        if let Ok(mut l) = self.listeners.write() {
                            l.clear();
                        }
                        for w in &mut self.workers {
                            w.draining = true;
                            signal_worker(w, signal_hook::consts::SIGTERM);
                        }
                    } else {
                        tracing::warn!(signal, "second signal: killing the workers");
                        for w in &mut self.workers {
                            let _ = w.child.kill();
                        }
                    }
                }
                Ok(Event::Ready { pid, admin }) => self.on_ready(pid, admin),
                Err(_) => {}
            }
            self.reap();
            self.check_reload();
            self.restart_due();
            self.publish();
            if self.fatal.is_some() && !self.stopping {
                self.stopping = true;
                self.restarts.clear();
                for w in &mut self.workers {
                    w.draining = true;
                    signal_worker(w, signal_hook::consts::SIGTERM);
                }
            }
            if self.stopping && self.workers.is_empty() {
                break;
            }
        }
        if let Some(path) = &self.opts.pid_file {
            let _ = std::fs::remove_file(path);
        }
        if let Some(why) = self.fatal.take() {
            anyhow::bail!("{why}");
        }
        tracing::info!("every worker has exited; supervisor stopped");
        Ok(())
    }

    /// Start worker `slot` of `generation` on its listeners.
    fn spawn(&mut self, slot: usize, generation: u32) -> anyhow::Result<()> {
        let sockets = self
            .listeners
            .read()
            .map_err(|_| anyhow::anyhow!("socket lock poisoned"))?;
        let mine: Vec<&Listener> = if self.opts.reuseport {
            sockets
                .iter()
                .skip(slot * self.opts.per_worker)
                .take(self.opts.per_worker)
                .collect()
        } else {
            sockets.iter().collect()
        };
        let numbers: Vec<String> = mine
            .iter()
            .map(|l| sys::fd::number(*l).to_string())
            .collect();
        let (ready_r, ready_w) = sys::fd::pipe().context("creating the ready pipe")?;
        let pair = if self.opts.dispatch {
            Some(sys::fd::socketpair().context("creating a connection socket")?)
        } else {
            None
        };
        let mine: Vec<&Listener> = if pair.is_some() { Vec::new() } else { mine };
        // Open the descriptors to the child for the length of one spawn. Only this thread
        // starts processes, so no other child can inherit them meanwhile.
        for l in &mine {
            sys::fd::set_inherited(l.as_fd(), true)?;
        }
        sys::fd::set_inherited(ready_w.as_fd(), true)?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.opts.args);
        match &pair {
            Some((_, theirs)) => {
                sys::fd::set_inherited(theirs.as_fd(), true)?;
                let addr = sockets
                    .first()
                    .map(Listener::local_addr)
                    .context("no socket to serve")?;
                cmd.env(PASSED_ENV, format!("{}@{addr}", sys::fd::number(theirs)));
            }
            None => {
                cmd.env(FDS_ENV, numbers.join(","));
            }
        }
        let spawned = cmd
            .env(READY_ENV, sys::fd::number(&ready_w).to_string())
            .env(
                WORKER_ENV,
                format!("{generation}.{slot}.{}", std::process::id()),
            )
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .spawn();
        for l in &mine {
            sys::fd::set_inherited(l.as_fd(), false)?;
        }
        drop(ready_w);
        let conn_sock = pair.map(|(ours, theirs)| {
            drop(theirs);
            // Never block the dispatcher on one slow worker: it tries the next.
            let _ = sys::fd::set_nonblocking(ours.as_fd());
            Arc::new(ours)
        });
        let child = spawned.with_context(|| format!("starting {}", self.exe.display()))?;
        let pid = child.id();
        tracing::info!(pid, generation, slot, "worker started");
        let tx = self.events.0.clone();
        std::thread::Builder::new()
            .name("ready-pipe".into())
            .spawn(move || {
                let file = std::fs::File::from(ready_r);
                for line in std::io::BufReader::new(file).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.strip_prefix("ready") {
                        let admin = rest
                            .split_whitespace()
                            .find_map(|w| w.strip_prefix("admin="))
                            .and_then(|a| a.parse().ok());
                        let _ = tx.send(Event::Ready { pid, admin });
                    }
                }
            })
            .context("starting a ready-pipe thread")?;
        self.workers.push(Worker {
            conn_sock,
            child,
            generation,
            slot,
            ready: false,
            draining: false,
            started: Instant::now(),
            admin: None,
        });
        Ok(())
    }

    fn on_ready(&mut self, pid: u32, admin: Option<SocketAddr>) {
        if let Some(w) = self.workers.iter_mut().find(|w| w.child.id() == pid) {
            self.ever_ready = true;
            w.ready = true;
            w.admin = admin;
            tracing::info!(
                pid,
                generation = w.generation,
                slot = w.slot,
                "worker serving"
            );
        }
        self.update_targets();
    }

    /// Point the dispatcher at the workers that serve now: ready, not draining, of the
    /// current generation. Called before any worker is told to drain, and under the lock
    /// the dispatcher sends with, so nothing is passed to a worker after that.
    fn update_targets(&self) {
        if !self.opts.dispatch {
            return;
        }
        let mut live: Vec<(u32, Arc<OwnedFd>)> = self
            .workers
            .iter()
            .filter(|w| w.ready && !w.draining && w.generation == self.generation && !self.stopping)
            .filter_map(|w| w.conn_sock.clone().map(|s| (w.child.id(), s)))
            .collect();
        live.sort_by_key(|(pid, _)| *pid);
        if let Ok(mut t) = self.targets.lock() {
            *t = live;
        }
    }

    fn start_reload(&mut self) {
        if self.stopping {
            return;
        }
        if self.reload.is_some() {
            tracing::warn!("reload already in progress; SIGHUP ignored");
            return;
        }
        let old = self.generation;
        self.generation += 1;
        tracing::info!(
            from = old,
            to = self.generation,
            "reload: starting a new generation on the same sockets"
        );
        self.restarts.clear();
        self.reload = Some(Reload {
            old,
            deadline: Instant::now() + READY_TIMEOUT,
        });
        for slot in 0..self.opts.processes {
            if let Err(err) = self.spawn(slot, self.generation) {
                tracing::error!("reload: {err:#}");
                self.abandon_reload("a new worker could not be started");
                return;
            }
        }
    }

    /// When the whole new generation serves, drain the old one.
    fn check_reload(&mut self) {
        let Some(reload) = &self.reload else { return };
        let new = self.generation;
        let ready = self
            .workers
            .iter()
            .filter(|w| w.generation == new && w.ready)
            .count();
        if ready >= self.opts.processes {
            let old = reload.old;
            let mut drained = 0;
            for w in self.workers.iter_mut().filter(|w| w.generation <= old) {
                w.draining = true;
                drained += 1;
            }
            self.update_targets();
            for w in self.workers.iter().filter(|w| w.draining) {
                signal_worker(w, signal_hook::consts::SIGTERM);
            }
            tracing::info!(
                generation = new,
                draining = drained,
                "reload: new generation serving; old generation draining"
            );
            self.reload = None;
        } else if Instant::now() >= reload.deadline {
            self.abandon_reload("the new generation was not ready in time");
        }
    }

    fn abandon_reload(&mut self, why: &str) {
        let Some(reload) = self.reload.take() else {
            return;
        };
        let failed = self.generation;
        tracing::error!(
            generation = failed,
            "reload abandoned: {why}; the old generation keeps serving"
        );
        for w in self.workers.iter_mut().filter(|w| w.generation == failed) {
            w.draining = true;
            signal_worker(w, signal_hook::consts::SIGTERM);
        }
        self.generation = reload.old;
    }

    /// Collect exited workers, log why, and plan restarts.
    fn reap(&mut self) {
        let mut i = 0;
        while i < self.workers.len() {
            let status = match self.workers[i].child.try_wait() {
                Ok(Some(status)) => status,
                Ok(None) => {
                    i += 1;
                    continue;
                }
                Err(err) => {
                    tracing::error!(%err, "waiting for a worker");
                    i += 1;
                    continue;
                }
            };
            let w = self.workers.swap_remove(i);
            self.update_targets();
            let pid = w.child.id();
            let ran = w.started.elapsed();
            let cause = describe(status);
            if w.draining && status.success() {
                tracing::info!(
                    pid,
                    generation = w.generation,
                    slot = w.slot,
                    "worker drained and exited"
                );
                continue;
            }
            tracing::warn!(
                pid,
                generation = w.generation,
                slot = w.slot,
                ran_s = ran.as_secs_f64(),
                "worker exited: {cause}"
            );
            if self.reload.is_some() && w.generation == self.generation && !w.ready {
                self.abandon_reload("a new worker exited before it was ready");
                continue;
            }
            if self.stopping || w.draining || w.generation != self.generation {
                continue;
            }
            let failures = &mut self.failures[w.slot];
            *failures = if ran >= HEALTHY_AFTER {
                0
            } else {
                *failures + 1
            };
            if !self.ever_ready && *failures >= START_ATTEMPTS {
                self.fatal = Some(format!(
                    "workers exit before serving ({cause}, {START_ATTEMPTS} times); see their errors above"
                ));
                continue;
            }
            let delay = if *failures == 0 {
                Duration::ZERO
            } else {
                (Duration::from_millis(100) * 2u32.saturating_pow(*failures - 1)).min(MAX_BACKOFF)
            };
            if !delay.is_zero() {
                tracing::warn!(
                    slot = w.slot,
                    delay_ms = delay.as_millis() as u64,
                    "worker keeps dying; restarting after a pause"
                );
            }
            self.restarts.push((w.slot, Instant::now() + delay));
        }
    }

    fn restart_due(&mut self) {
        let now = Instant::now();
        let due: Vec<usize> = self
            .restarts
            .iter()
            .filter(|(_, at)| *at <= now)
            .map(|(slot, _)| *slot)
            .collect();
        self.restarts.retain(|(_, at)| *at > now);
        for slot in due {
            if let Err(err) = self.spawn(slot, self.generation) {
                tracing::error!("restarting worker {slot}: {err:#}");
                self.restarts.push((slot, now + MAX_BACKOFF));
            }
        }
    }

    fn publish(&self) {
        if let Ok(mut procs) = self.processes.lock() {
            *procs = self
                .workers
                .iter()
                .map(|w| ProcessState {
                    pid: w.child.id(),
                    generation: w.generation,
                    slot: w.slot,
                    ready: w.ready,
                    draining: w.draining,
                    age_s: w.started.elapsed().as_secs_f64(),
                    admin: w.admin,
                    threads: Vec::new(),
                })
                .collect();
            procs.sort_by_key(|p| (p.generation, p.slot));
        }
    }
}

fn signal_worker(w: &Worker, signal: i32) {
    let _ = sys::process::signal(w.child.id(), signal);
}

/// Catch the signals a supervisor handles (SIGINT, SIGTERM, SIGHUP): first thing, before
/// the sockets are bound, so a SIGTERM at start drains instead of killing.
pub fn catch_signals() -> anyhow::Result<signal_hook::iterator::Signals> {
    signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .context("installing signal handlers")
}

/// "exit code 0", "killed by signal 9 (SIGKILL)", …
fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    match status.signal() {
        Some(sig) => format!(
            "killed by signal {sig} ({})",
            signal_hook::low_level::signal_name(sig).unwrap_or("?")
        ),
        None => "ended".into(),
    }
}

/// Bind the sockets for `opts` as `cfg` asks: one, or `processes × per_worker`
/// SO_REUSEPORT sockets on one port.
pub fn bind(cfg: &backlog_server::Config, opts: &Options) -> anyhow::Result<Vec<Listener>> {
    let count = if opts.reuseport {
        opts.processes * opts.per_worker
    } else {
        1
    };
    let mut out: Vec<Listener> = Vec::with_capacity(count);
    for _ in 0..count {
        let mut addr = cfg.listen;
        if let Some(first) = out.first() {
            addr.set_port(first.local_addr().port());
        }
        let reuseport = Reuseport::of(opts.reuseport, out.is_empty());
        out.push(Listener::bind_for(cfg, addr, reuseport)?);
    }
    Ok(out)
}

/// The supervisor's accept loop in the multi-process `dispatch` model: accept, then send
/// the descriptor to the next worker round-robin. With no worker to take it, a connection
/// is held (or left in the kernel's queue), never dropped; a worker whose socket is full
/// or gone is skipped.
fn dispatcher(sockets: &Sockets, targets: &Targets, stop: &AtomicBool) {
    let Ok(listeners) = sockets.read() else {
        return;
    };
    let Some(listener) = listeners.first() else {
        return;
    };
    let epoll = match sys::Epoll::new() {
        Ok(e) => e,
        Err(err) => {
            tracing::error!(%err, "dispatcher: epoll");
            return;
        }
    };
    if let Err(err) = epoll.add(listener, 0, sys::Interest::Readable) {
        tracing::error!(%err, "dispatcher: polling the listener");
        return;
    }
    let mut events = sys::Events::with_capacity(4);
    let mut next = 0usize;
    let mut held: Option<OwnedFd> = None;
    while !stop.load(Ordering::Relaxed) {
        let fd = match held.take() {
            Some(fd) => fd,
            None => {
                if targets.lock().map_or(true, |t| t.is_empty()) {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                match listener.accept() {
                    Ok(conn) => conn.fd,
                    Err(err) if sys::would_block(&err) => {
                        let _ = epoll.wait(&mut events, Some(Duration::from_millis(100)));
                        continue;
                    }
                    Err(err) => {
                        tracing::warn!(%err, "dispatcher: accept failed");
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                }
            }
        };
        let sent = match targets.lock() {
            Ok(t) if !t.is_empty() => (0..t.len()).any(|i| {
                let k = (next + i) % t.len();
                if sys::fd::send_fds(t[k].1.as_fd(), &[fd.as_fd()]).is_ok() {
                    next = k + 1;
                    true
                } else {
                    false
                }
            }),
            _ => false,
        };
        if !sent {
            held = Some(fd);
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // Shutting down: pass out what is already queued (those clients finished their
    // handshake) while the workers still take connections; a second at most.
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        let fd = match held.take() {
            Some(fd) => fd,
            None => match listener.accept() {
                Ok(conn) => conn.fd,
                Err(_) => break,
            },
        };
        let sent = targets.lock().is_ok_and(|t| {
            t.iter()
                .any(|(_, sock)| sys::fd::send_fds(sock.as_fd(), &[fd.as_fd()]).is_ok())
        });
        if !sent {
            held = Some(fd);
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
