//! What /proc says about a process.

/// Resident memory of process `pid` (`None`: this process), in KiB.
pub fn rss_kib(pid: Option<u32>) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// Resident anonymous memory (the heap, stacks, mmapped buffers; not the binary's pages,
/// which grow as new code paths run and say nothing about what is kept), in KiB.
pub fn rss_anon_kib(pid: Option<u32>) -> u64 {
    status_kib(pid, "RssAnon:")
}

fn status_kib(pid: Option<u32>, field: &str) -> u64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_string(),
    };
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Raise this test process's soft descriptor limit to the hard one, for a test that holds
/// more connections (both ends in one process) than a default soft limit of 1,024 allows.
/// The server library leaves the process's limits alone; a test that needs more says so.
pub fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(soft), Some(hard)) = (limit.current, limit.maximum) {
        if soft < hard {
            limit.current = Some(hard);
            let _ = setrlimit(Resource::Nofile, limit);
        }
    }
}
