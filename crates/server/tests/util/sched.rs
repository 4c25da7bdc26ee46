//! How the scheduler treats each thread of this process, as `/proc` shows it: for the tests
//! of who yields the core to whom (each alone in its test binary, since another test's
//! server would be among the threads).

use std::time::{Duration, Instant};

/// Linux's numbers for the policies (`/proc/<pid>/task/<tid>/stat`, field 41).
pub const SCHED_OTHER: u32 = 0;
pub const SCHED_IDLE: u32 = 5;

#[derive(Debug, Clone, PartialEq)]
pub struct Sched {
    pub policy: u32,
    pub nice: i32,
    /// The EEVDF slice in ns, where the kernel shows it (`/proc/.../sched`, a debug file).
    pub slice: Option<u64>,
}

/// (thread name, scheduling) of every thread of this process.
pub fn threads() -> Vec<(String, Sched)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let path = task.path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue; // the thread has just exited
        };
        // Fields after the parenthesised name start at field 3.
        let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .collect();
        let slice = std::fs::read_to_string(path.join("sched"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("se.slice"))
                    .and_then(|l| l.split(':').nth(1)?.trim().parse().ok())
            });
        out.push((
            comm.trim().to_string(),
            Sched {
                policy: rest[41 - 3].parse().unwrap(),
                nice: rest[19 - 3].parse().unwrap(),
                slice,
            },
        ));
    }
    out
}

/// The threads `{role}-N` (not `worker-runtime`, the thread that owns a service's runtime,
/// nor `worker-blocking`, tokio's blocking threads).
pub fn of_role(all: &[(String, Sched)], role: &str) -> Vec<Sched> {
    all.iter()
        .filter(|(name, _)| {
            name.strip_prefix(role)
                .and_then(|n| n.strip_prefix('-'))
                .is_some_and(|n| n.parse::<usize>().is_ok())
        })
        .map(|(_, s)| s.clone())
        .collect()
}

/// The threads once `done` holds (each thread sets its own as it starts), or as they are
/// after 5 s.
pub fn settled(done: impl Fn(&[(String, Sched)]) -> bool) -> Vec<(String, Sched)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let all = threads();
        if done(&all) || Instant::now() > deadline {
            return all;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
