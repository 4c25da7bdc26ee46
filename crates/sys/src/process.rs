//! Signals to other processes: a supervisor telling its workers to drain, `backlog reload`
//! telling a supervisor to start a new generation.

use std::io;

/// Send signal number `signal` (`libc`'s numbering, e.g. from signal-hook's constants) to
/// process `pid`.
pub fn signal(pid: u32, signal: i32) -> io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a process id"))?;
    let signal = rustix::process::Signal::from_named_raw(signal)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a signal"))?;
    rustix::process::kill_process(pid, signal)?;
    Ok(())
}

/// Ask the kernel to send this process `signal` when its parent dies, so that workers never
/// outlive a supervisor that was killed outright. The kernel sends it each time the process
/// is re-parented, which for a multi-threaded parent is once per exiting thread: the handler
/// must be idempotent. Returns false if the parent is already gone (adopted by init or a
/// subreaper), in which case the caller should exit.
pub fn signal_with_parent(parent: u32, signal: i32) -> io::Result<bool> {
    let signal = rustix::process::Signal::from_named_raw(signal)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a signal"))?;
    rustix::process::set_parent_process_death_signal(Some(signal))?;
    Ok(rustix::process::getppid().is_some_and(|p| p.as_raw_pid() as u32 == parent))
}
