//! Sockets this process did not bind. Two sources hand them down across exec:
//! systemd socket activation (`LISTEN_FDS` descriptors from 3 up, meant for the process in
//! `LISTEN_PID`; sd_listen_fds(3)), and backlog's own supervisor (`BACKLOG_FDS`, the
//! numbers of this worker's listeners, with `BACKLOG_READY_FD`, a pipe to say "serving",
//! and `BACKLOG_WORKER`, this worker's generation and slot). The variables are removed once
//! read, so nothing this process starts inherits them by mistake.

use anyhow::{bail, Context};
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

/// This worker's listener descriptors, comma-separated.
pub const FDS_ENV: &str = "BACKLOG_FDS";
/// `fd@addr`: the Unix socket a dispatching supervisor (which accepts on `addr`) sends
/// connections over, in place of listeners.
pub const PASSED_ENV: &str = "BACKLOG_PASSED";
/// The write end of the pipe the supervisor waits on.
pub const READY_ENV: &str = "BACKLOG_READY_FD";
/// `generation.slot.supervisor-pid` of a supervised worker.
pub const WORKER_ENV: &str = "BACKLOG_WORKER";

/// Where inherited sockets came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// backlog's supervisor.
    Supervisor,
    /// systemd socket activation.
    Systemd,
}

fn adopt_listener(raw: i32) -> anyhow::Result<backlog_server::Listener> {
    let fd = sys::fd::adopt(raw).with_context(|| format!("inherited descriptor {raw}"))?;
    backlog_server::Listener::from_fd(fd).with_context(|| format!("inherited descriptor {raw}"))
}

/// The listening sockets passed down to this process, if any.
pub fn listeners() -> anyhow::Result<Option<(Source, Vec<backlog_server::Listener>)>> {
    if let Ok(passed) = std::env::var(PASSED_ENV) {
        std::env::remove_var(PASSED_ENV);
        let (raw, addr) = passed
            .split_once('@')
            .with_context(|| format!("{PASSED_ENV}={passed} is not fd@addr"))?;
        let raw: i32 = raw.parse().context(PASSED_ENV)?;
        let addr: SocketAddr = addr.parse().context(PASSED_ENV)?;
        let fd = sys::fd::adopt(raw).context("the connection socket")?;
        let listener = backlog_server::Listener::from_passed(fd, addr)?;
        return Ok(Some((Source::Supervisor, vec![listener])));
    }
    if let Ok(list) = std::env::var(FDS_ENV) {
        std::env::remove_var(FDS_ENV);
        let mut out = Vec::new();
        for part in list.split(',').filter(|p| !p.is_empty()) {
            let raw: i32 = part
                .parse()
                .with_context(|| format!("{FDS_ENV}={list} is not a list of descriptors"))?;
            out.push(adopt_listener(raw)?);
        }
        if out.is_empty() {
            bail!("{FDS_ENV} is empty");
        }
        return Ok(Some((Source::Supervisor, out)));
    }
    let (Ok(pid), Ok(count)) = (std::env::var("LISTEN_PID"), std::env::var("LISTEN_FDS")) else {
        return Ok(None);
    };
    // Meant for another process (a parent that did not clear them): not ours to take.
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None);
    }
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    let count: i32 = count
        .trim()
        .parse()
        .with_context(|| format!("LISTEN_FDS={count} is not a number"))?;
    if count < 1 {
        return Ok(None);
    }
    // SD_LISTEN_FDS_START
    let out = (3..3 + count)
        .map(adopt_listener)
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some((Source::Systemd, out)))
}

/// The signal a supervised worker gets when its supervisor dies. Not SIGTERM: the kernel sends
/// it once per supervisor thread that exits, and a worker must tell "the operator asked twice:
/// exit now" from "my parent is gone: drain once".
pub const PARENT_DEATH_SIGNAL: i32 = signal_hook::consts::SIGUSR2;

/// What the supervisor tells a worker about itself: `generation.slot.supervisor-pid`.
struct WorkerEnv {
    generation: u64,
    slot: u64,
    supervisor: u32,
}

impl WorkerEnv {
    fn read() -> anyhow::Result<Option<WorkerEnv>> {
        let Ok(id) = std::env::var(WORKER_ENV) else {
            return Ok(None);
        };
        let parts: Vec<&str> = id.split('.').collect();
        let parsed = match parts[..] {
            [g, s, p] => (g.parse().ok(), s.parse().ok(), p.parse().ok()),
            _ => (None, None, None),
        };
        let (Some(generation), Some(slot), Some(supervisor)) = parsed else {
            bail!("{WORKER_ENV}={id} is not generation.slot.pid");
        };
        Ok(Some(WorkerEnv {
            generation,
            slot,
            supervisor,
        }))
    }

    /// The name the supervisor's admin view gives this worker's threads' prefix.
    fn label(&self) -> String {
        format!("w{}.g{}", self.slot, self.generation)
    }
}

/// `w{slot}.g{generation}` if this process is a supervised worker, read without consuming
/// anything: for the log prefix, set up before the command runs.
pub fn worker_label() -> Option<String> {
    WorkerEnv::read().ok().flatten().map(|w| w.label())
}

/// A supervised worker's name, `w{slot}.g{generation}` (as the supervisor's admin view
/// prefixes its threads), if this process is one. A worker ends with its supervisor: it asks
/// for [`PARENT_DEATH_SIGNAL`] when the supervisor dies (and drains on it), and refuses to
/// start if it already has.
pub fn worker_id() -> anyhow::Result<Option<String>> {
    let Some(env) = WorkerEnv::read()? else {
        return Ok(None);
    };
    std::env::remove_var(WORKER_ENV);
    let (supervisor, name) = (env.supervisor, env.label());
    if !sys::process::signal_with_parent(supervisor, PARENT_DEATH_SIGNAL)
        .context("PR_SET_PDEATHSIG")?
    {
        bail!("the supervisor ({supervisor}) is gone");
    }
    Ok(Some(name))
}

/// The pipe a supervised worker reports readiness on.
pub struct Ready(OwnedFd);

impl Ready {
    /// Take the pipe from the environment (None outside a supervisor).
    pub fn take() -> anyhow::Result<Option<Ready>> {
        let Ok(raw) = std::env::var(READY_ENV) else {
            return Ok(None);
        };
        std::env::remove_var(READY_ENV);
        let raw: i32 = raw
            .parse()
            .with_context(|| format!("{READY_ENV}={raw} is not a descriptor"))?;
        Ok(Some(Ready(sys::fd::adopt(raw).context("the ready pipe")?)))
    }

    /// Tell the supervisor this worker serves (and where its admin endpoint is). The pipe
    /// stays open: the supervisor reads EOF when this process ends.
    pub fn send(&self, admin: Option<SocketAddr>) -> anyhow::Result<()> {
        let line = match admin {
            Some(a) => format!("ready admin={a}\n"),
            None => "ready\n".to_string(),
        };
        std::fs::File::from(self.0.try_clone()?)
            .write_all(line.as_bytes())
            .context("writing to the ready pipe")
    }
}
