//! How a thread asks the scheduler to treat it, by the work it does: the one place backlog
//! touches scheduling classes, nice values and EEVDF slices. Two kinds of work can wait —
//! TLS handshakes on acceptors, and the business on workers when it is asked to run in the
//! background — and the readers beside them must not: a reader that wakes on a core where
//! such work runs should take the core at once rather than wait for the other thread's
//! slice to end, or every short request behind that reader waits too.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;
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
/// the business keeps up. In the idle class a worker runs only on what the normal class
/// leaves; at saturation that starves it (measured: a closed loop of 64 clients on the same
/// two cores, the slow requests' p99 2.2× the normal class's). So the worker checks, before
/// each piece of business, how much work waits beyond what the workers hold: more than one
/// piece per worker and it returns to the normal class; once nothing waits, back to the
/// idle class. A syscall at each change only. A worker caught in the idle class in the
/// middle of a long piece cannot check: the readers bring it back ([`Crew::rescue`]).
#[derive(Debug)]
pub(crate) struct Background {
    crew: Arc<Crew>,
    /// Its place in the crew; `None` past the crew's size (never: one place per worker).
    member: Option<usize>,
}

/// The workers of one shape in the background, as the other threads see them: each one's
/// thread id and whether it is in the idle class now.
#[derive(Debug)]
pub(crate) struct Crew {
    members: Box<[Member]>,
    joined: AtomicUsize,
}

#[derive(Debug, Default)]
struct Member {
    tid: AtomicI32,
    lowered: AtomicBool,
}

impl Crew {
    /// A crew of `workers` places.
    pub(crate) fn new(workers: usize) -> Arc<Crew> {
        Arc::new(Crew {
            members: (0..workers.max(1)).map(|_| Member::default()).collect(),
            joined: AtomicUsize::new(0),
        })
    }

    /// The workers it has places for.
    pub(crate) fn workers(&self) -> usize {
        self.members.len()
    }

    /// With `waiting` pieces of work that no worker holds yet: past one per worker, bring
    /// every worker in the idle class back to the normal class. Called by the readers at
    /// the end of a round: a worker in the middle of a long piece in the idle class cannot
    /// do it itself, and on a saturated machine it would finish that piece only when the
    /// normal class leaves it a core (measured: the mixed closed loop's slow requests at
    /// p99 120 ms against 13 for `axum::serve` while the readers answered the fast ones).
    /// The worker goes back to the idle class itself once nothing waits. A worker that
    /// lowers itself as a reader raises it may end in the normal class believing it is
    /// lowered: it then stays in the normal class until the next rescue — the scheduler's
    /// default, never a starved worker.
    pub(crate) fn rescue(&self, waiting: usize) {
        if waiting <= self.workers() {
            return;
        }
        for m in self.members.iter() {
            if m.lowered.load(Ordering::Relaxed) && m.lowered.swap(false, Ordering::AcqRel) {
                let tid = m.tid.load(Ordering::Acquire);
                if let Err(err) = sys::process::normal_thread_class_of(tid) {
                    tracing::warn!(%err, tid, "cannot return a background worker to the normal class");
                }
            }
        }
    }
}

impl Background {
    /// Put the calling thread, one of `crew`, in the background (the idle class).
    pub(crate) fn enter(crew: &Arc<Crew>) -> Self {
        let place = crew.joined.fetch_add(1, Ordering::AcqRel);
        let member = crew.members.get(place).map(|m| {
            m.tid.store(sys::process::thread_id(), Ordering::Release);
            place
        });
        let b = Background {
            crew: crew.clone(),
            member,
        };
        match sys::process::idle_thread_class() {
            Ok(()) => b.set_lowered(true),
            Err(err) => tracing::warn!(%err, "cannot put a worker in the idle class"),
        }
        b
    }

    /// The workers of its crew.
    pub(crate) fn workers(&self) -> usize {
        self.crew.workers()
    }

    fn me(&self) -> Option<&Member> {
        self.crew.members.get(self.member?)
    }

    fn set_lowered(&self, lowered: bool) {
        if let Some(m) = self.me() {
            m.lowered.store(lowered, Ordering::Release);
        }
    }

    /// Before a piece of business, with `waiting` pieces queued that no worker holds yet.
    pub(crate) fn adjust(&mut self, waiting: usize) {
        let Some(me) = self.me() else {
            return;
        };
        let lowered = me.lowered.load(Ordering::Acquire);
        if lowered && waiting > self.crew.workers() {
            if me.lowered.swap(false, Ordering::AcqRel) {
                if let Err(err) = sys::process::normal_thread_class() {
                    tracing::warn!(%err, "cannot return a background worker to the normal class");
                }
            }
        } else if !lowered && waiting == 0 {
            match sys::process::idle_thread_class() {
                Ok(()) => self.set_lowered(true),
                Err(err) => tracing::warn!(%err, "cannot put a worker in the idle class"),
            }
        }
    }

    /// Whether the worker is in the idle class now.
    #[cfg(test)]
    fn lowered(&self) -> bool {
        self.me().is_some_and(|m| m.lowered.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The class the calling thread is in, by sched_getscheduler's numbers.
    fn class() -> i32 {
        class_of("thread-self")
    }

    /// The class of the thread at `/proc/{path}`.
    fn class_of(path: &str) -> i32 {
        std::fs::read_to_string(format!("/proc/{path}/stat"))
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
            let mut b = Background::enter(&Crew::new(4));
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

    #[test]
    #[ignore = "needs CAP_SYS_NICE or RLIMIT_NICE 20 to leave the idle class: scripts/test runs it as root"]
    fn a_reader_brings_back_a_worker_caught_in_the_idle_class_when_work_piles_up() {
        let crew = Crew::new(2);
        let (entered, go) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|scope| {
            let worker = scope.spawn(|| {
                let mut b = Background::enter(&crew);
                entered.wait();
                // In the middle of a long piece: the others decide meanwhile.
                go.wait();
                assert_eq!(class(), libc::SCHED_OTHER, "brought back");
                assert!(!b.lowered());
                b.adjust(0);
                assert_eq!(class(), libc::SCHED_IDLE, "back once nothing waits");
            });
            entered.wait();
            let tid = crew.members[0].tid.load(Ordering::Acquire);
            let path = format!("self/task/{tid}");
            assert_eq!(class_of(&path), libc::SCHED_IDLE);
            crew.rescue(2);
            assert_eq!(
                class_of(&path),
                libc::SCHED_IDLE,
                "one piece per worker waits"
            );
            crew.rescue(3);
            assert_eq!(class_of(&path), libc::SCHED_OTHER);
            go.wait();
            worker.join().unwrap();
        });
    }
}
