//! How a thread asks the scheduler to treat it, by the work it does: the one place backlog
//! touches scheduling classes, nice values and EEVDF slices. Two kinds of work can wait —
//! TLS handshakes on acceptors, and the business on workers when it is asked to run in the
//! background — and the readers beside them must not: a reader that wakes on a core where
//! such work runs should take the core at once rather than wait for the other thread's
//! slice to end, or every short request behind that reader waits too.

use std::time::Duration;

/// Nice levels an acceptor that runs TLS handshakes lowers its own thread by: when it and a
/// reader both want a core, the reader gets about ten times its share.
pub const HANDSHAKE_NICE: i32 = 10;

/// The slice a reader asks the scheduler for when handshakes run on acceptors beside it, or
/// the business on workers in the background. A share is not enough on its own: EEVDF may
/// let a running thread of the normal class finish its slice before a woken reader gets the
/// core, and that wait was most of what the established clients still saw in a handshake
/// storm. A reader with a shorter slice
/// than the acceptor's (or a handler's) preempts it as it wakes.
pub const READER_SLICE: Duration = Duration::from_micros(100);

/// How a thread asks the scheduler to treat it, once, as it starts. Only shapes with work
/// that can wait ask anything: acceptors that run TLS handshakes, and workers whose
/// business runs in the background ([`Background`]); the readers beside them ask for short
/// slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Priority {
    /// The scheduler's defaults.
    Normal,
    /// A reader beside handshaking acceptors or background workers: a short slice
    /// ([`READER_SLICE`]).
    Requests,
    /// An acceptor that runs handshakes: [`HANDSHAKE_NICE`] levels lower. Where the kernel
    /// does not honour slice requests (before Linux 6.12) a lower share alone measured
    /// 0.54× the readers' storm p99, so there the acceptor takes the `SCHED_IDLE` class
    /// instead — a waking reader always preempts it, at the price that a saturated server
    /// admits new TLS connections very slowly (seconds, measured).
    Handshakes,
}

impl Priority {
    /// Ask the scheduler for this, for the calling thread, once as it starts.
    pub(crate) fn take(self) {
        match self {
            Priority::Normal => {}
            Priority::Requests => match sys::process::request_slice(READER_SLICE) {
                Ok(true) => {}
                Ok(false) => tracing::debug!("this kernel ignores slice requests"),
                Err(err) => tracing::warn!(%err, "cannot ask for a short slice for a reader"),
            },
            Priority::Handshakes => {
                if let Err(err) = sys::process::lower_thread_priority(HANDSHAKE_NICE) {
                    tracing::warn!(%err, "cannot lower the handshaking acceptor's priority");
                }
                if !sys::process::slices_honoured() {
                    if let Err(err) = sys::process::idle_thread_class() {
                        tracing::warn!(%err, "cannot put the handshaking acceptor in the idle class");
                    }
                }
            }
        }
    }
}

/// A worker running the business behind readers that must not wait for it
/// ([`BusinessPriority::Background`](crate::BusinessPriority::Background)): in the
/// `SCHED_IDLE` class, so a waking reader (or anything else) preempts it at once — while
/// the business keeps up. In the idle class a worker runs
/// only on what the normal class leaves; at saturation that starves it (measured: a closed
/// loop of 64 clients on the same two cores, the slow requests' p99 2.2× the normal
/// class's). So the worker checks, before each piece of business, how much work waits
/// beyond what the workers hold: more than one piece per worker and it returns to the normal
/// class; once nothing waits, back to the idle class. A syscall at each change only.
#[derive(Debug)]
pub(crate) struct Background {
    workers: usize,
    lowered: bool,
}

impl Background {
    /// Put the calling thread, one of `workers`, in the background (the idle class).
    pub(crate) fn enter(workers: usize) -> Self {
        let lowered = match sys::process::idle_thread_class() {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(%err, "cannot put a worker in the idle class");
                false
            }
        };
        Background {
            workers: workers.max(1),
            lowered,
        }
    }

    /// Before a piece of business, with `waiting` pieces queued that no worker holds yet.
    pub(crate) fn adjust(&mut self, waiting: usize) {
        if self.lowered && waiting > self.workers {
            self.lowered = false;
            if let Err(err) = sys::process::normal_thread_class() {
                tracing::warn!(%err, "cannot return a background worker to the normal class");
            }
        } else if !self.lowered && waiting == 0 {
            self.lowered = true;
            if let Err(err) = sys::process::idle_thread_class() {
                tracing::warn!(%err, "cannot put a worker in the idle class");
            }
        }
    }

    /// Whether the worker is in the idle class now.
    #[cfg(test)]
    fn lowered(&self) -> bool {
        self.lowered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The class a thread is in, by sched_getscheduler's numbers.
    fn class() -> i32 {
        std::fs::read_to_string("/proc/thread-self/stat")
            .ok()
            .and_then(|s| {
                s[s.rfind(')')? + 1..]
                    .split_whitespace()
                    .nth(41 - 3)?
                    .parse()
                    .ok()
            })
            .unwrap()
    }

    #[test]
    #[ignore = "needs CAP_SYS_NICE or RLIMIT_NICE 20 to leave the idle class: scripts/test runs it as root"]
    fn a_background_worker_leaves_the_idle_class_when_work_piles_up_and_returns_once_none_waits() {
        std::thread::spawn(|| {
            let mut b = Background::enter(4);
            assert!(b.lowered());
            assert_eq!(class(), libc::SCHED_IDLE);
            // Up to one piece per worker waiting: still in the background.
            for waiting in [0, 1, 4, 2] {
                b.adjust(waiting);
                assert!(b.lowered(), "{waiting}");
                assert_eq!(class(), libc::SCHED_IDLE);
            }
            b.adjust(5);
            assert!(!b.lowered());
            assert_eq!(class(), libc::SCHED_OTHER);
            // Still catching up: it stays in the normal class until nothing waits.
            for waiting in [9, 3, 1] {
                b.adjust(waiting);
                assert!(!b.lowered(), "{waiting}");
                assert_eq!(class(), libc::SCHED_OTHER);
            }
            b.adjust(0);
            assert!(b.lowered());
            assert_eq!(class(), libc::SCHED_IDLE);
        })
        .join()
        .unwrap();
    }
}
