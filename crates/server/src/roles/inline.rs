//! Which requests a reader answers itself, in a shape whose workers run the business
//! ([`InlineAnswers::Learned`](crate::InlineAnswers::Learned)): a service's, whose first
//! poll runs on the reader, or a native handler's, whose call does.
//!
//! A shape with workers sends every request to them so that a slow handler never holds a
//! reader. But most requests of most applications are cheap (a lookup, a redirect, a health
//! check): their answer is ready at the first poll, after a few microseconds, and the hop
//! to a worker and back costs more than that — two wake-ups, and under a mixed load a wait
//! for a core where a slow handler spins. So the workers measure every first poll in what
//! their thread ran (not in wall time: a busy machine preempts them, which says nothing of
//! the route), and a route (method and path) whose first polls were ready within the limit
//! ([`Config::inline_limit`](crate::Config::inline_limit)) and never blocked the thread
//! [`PROVEN`] times in a row is polled on the reader from then on.
//!
//! On the reader the check must cost nothing, so it is wall time: a poll that took longer
//! than the limit makes the route a suspect, and its next poll on a reader is measured in
//! what the thread ran, as the workers measure. A suspect that really ran long or blocked,
//! or any poll that must wait (its future not ready), sends the route back to the workers
//! with a strike: it must prove itself twice as long again before it returns (after 12
//! strikes, 65,536 cheap polls in a row). A route that turns slow holds a reader at most
//! twice before it goes back; a reader preempted mid-poll costs one measured poll. What
//! this cannot see: a route that is slow only now and then, and cheap every time it is
//! measured, holds its reader when it is slow — as every route does in a shape without
//! workers.
//!
//! The table is a fixed array of words shared by the readers and the workers: a route's
//! hash picks its slot, the rest of the hash tells routes apart, and a route that takes a
//! slot from another makes that one start over (memory stays bounded whatever paths the
//! clients send). Readers only read it on the hot path; a worker writes only while a
//! route is learning or when a poll ran long, and a race between two writers loses a
//! count, which only delays a promotion.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Cheap first polls in a row, on workers, before a route is first polled on a reader.
pub const PROVEN: u32 = 16;

/// Strikes past which the evidence asked for stops doubling.
const MAX_DOUBLINGS: u32 = 12;
/// Strikes counted (seven bits of a slot).
const MAX_STRIKES: u8 = 0x7f;
/// The slot's bit that marks a suspect.
const SUSPECT: u8 = 0x80;

/// Routes remembered at once.
const SLOTS: usize = 1024;

/// A route's identity: the hash of its method and path (not its query).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route(u64);

impl Route {
    pub(crate) fn of(req: &h1::Request) -> Route {
        let hasher = foldhash::fast::FixedState::with_seed(0x5eed_ba5e);
        Route(hasher.hash_one((req.method().as_str(), req.path_bytes())))
    }

    fn slot(self) -> usize {
        self.0 as usize % SLOTS
    }

    fn tag(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// One slot: the route's tag, its strikes, whether it is a suspect, and its cheap polls
/// in a row, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    tag: u32,
    strikes: u8,
    suspect: bool,
    streak: u32,
}

const STREAK_BITS: u32 = 24;
const STREAK_MAX: u32 = (1 << STREAK_BITS) - 1;

impl Entry {
    fn unpack(word: u64) -> Entry {
        let flags = (word >> STREAK_BITS) as u8;
        Entry {
            tag: (word >> 32) as u32,
            strikes: flags & MAX_STRIKES,
            suspect: flags & SUSPECT != 0,
            streak: word as u32 & STREAK_MAX,
        }
    }

    fn pack(self) -> u64 {
        let flags = self.strikes.min(MAX_STRIKES) | if self.suspect { SUSPECT } else { 0 };
        (u64::from(self.tag) << 32)
            | (u64::from(flags) << STREAK_BITS)
            | u64::from(self.streak.min(STREAK_MAX))
    }

    /// Cheap polls in a row this route needs before a reader polls it.
    fn needed(self) -> u32 {
        PROVEN << u32::from(self.strikes).min(MAX_DOUBLINGS)
    }

    fn proven(self) -> bool {
        self.streak >= self.needed()
    }
}

/// The routes seen and what their first polls cost, shared by an application's readers
/// and its workers.
pub(crate) struct CheapRoutes {
    slots: Box<[AtomicU64]>,
    /// A first poll that runs longer is not cheap.
    limit: Duration,
}

impl CheapRoutes {
    /// The routes of an application, cheap when their first poll runs within `limit`.
    pub(crate) fn new(limit: Duration) -> Self {
        CheapRoutes {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            limit,
        }
    }

    fn entry(&self, route: Route) -> Entry {
        let word = self.slots[route.slot()].load(Ordering::Relaxed);
        let entry = Entry::unpack(word);
        match entry.tag == route.tag() {
            true => entry,
            // Never seen, or its slot went to another route: it starts over.
            false => Entry {
                tag: route.tag(),
                strikes: 0,
                suspect: false,
                streak: 0,
            },
        }
    }

    fn store(&self, route: Route, entry: Entry) {
        self.slots[route.slot()].store(entry.pack(), Ordering::Relaxed);
    }

    /// Where `route`'s next answer is polled, with `waiting` pieces of work that no worker
    /// holds yet. Nothing is answered here while work waits for the workers: a saturated
    /// server serves in order of arrival, or the cheap requests, taking every core the
    /// readers can get, would starve the rest (measured: the mixed closed loop's slow
    /// requests at p99 94–110 ms, against 13 for `axum::serve`).
    pub(crate) fn place(&self, route: Route, waiting: usize) -> Place {
        if waiting > 0 {
            return Place::Workers;
        }
        let entry = self.entry(route);
        match (entry.proven(), entry.suspect) {
            (false, _) => Place::Workers,
            (true, false) => Place::Here,
            (true, true) => Place::HereMeasured,
        }
    }

    /// A worker's first poll of `route` (a native handler's call): run `poll`, measured in
    /// what the thread ran, and tell the table what it cost and whether `ready` says its
    /// result was ready (a poll that blocked the thread is not, however little it ran).
    pub(crate) fn on_worker<R>(
        &self,
        route: Route,
        poll: impl FnOnce() -> R,
        ready: impl FnOnce(&R) -> bool,
    ) -> R {
        let stopwatch = Stopwatch::Ran(sys::process::thread_usage());
        let out = poll();
        if let Took::Ran { cpu, blocked } = stopwatch.stop() {
            self.observed(route, cpu, ready(&out) && !blocked);
        }
        out
    }

    /// A worker's first poll of `route` ran `cpu` and was ready without blocking (or not).
    pub(crate) fn observed(&self, route: Route, cpu: Duration, ready: bool) {
        let mut entry = self.entry(route);
        let cheap = ready && cpu <= self.limit;
        let before = entry;
        entry.streak = match cheap {
            // Past the evidence asked for, counting on changes nothing a reader reads.
            true if entry.proven() => return,
            true => entry.streak + 1,
            false => 0,
        };
        if entry != before {
            self.store(route, entry);
        }
    }

    /// A reader polled `route` itself: what it took, and whether it was ready. A poll that
    /// waits, or a suspect's that ran long, sends the route back to the workers with a
    /// strike; an unmeasured one that took long in wall time makes it a suspect. Whether
    /// the route went back.
    pub(crate) fn answered_here(&self, route: Route, took: Took, ready: bool) -> bool {
        let cheap = match took {
            Took::Wall(wall) if ready && wall > self.limit => {
                let mut entry = self.entry(route);
                if !entry.suspect {
                    entry.suspect = true;
                    self.store(route, entry);
                }
                return false;
            }
            Took::Wall(_) => ready,
            Took::Ran { cpu, blocked } => ready && !blocked && cpu <= self.limit,
        };
        let mut entry = self.entry(route);
        if cheap {
            if entry.suspect {
                entry.suspect = false;
                self.store(route, entry);
            }
            return false;
        }
        entry.strikes = entry.strikes.saturating_add(1).min(MAX_STRIKES);
        entry.suspect = false;
        entry.streak = 0;
        self.store(route, entry);
        true
    }
}

/// Where a route's answer is polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// On a worker: the route has not proved cheap (yet, or again).
    Workers,
    /// On the reader, timed in wall time.
    Here,
    /// On the reader, measured in what the thread ran: its last poll there took long.
    HereMeasured,
}

/// Times a poll on a reader the way its place asks.
pub(crate) enum Stopwatch {
    Wall(Instant),
    Ran(std::io::Result<sys::process::ThreadUsage>),
}

impl Stopwatch {
    /// Start timing a poll placed `place` (never [`Place::Workers`]).
    pub(crate) fn start(place: Place) -> Stopwatch {
        match place {
            Place::HereMeasured => Stopwatch::Ran(sys::process::thread_usage()),
            _ => Stopwatch::Wall(Instant::now()),
        }
    }

    pub(crate) fn stop(self) -> Took {
        match self {
            Stopwatch::Wall(start) => Took::Wall(start.elapsed()),
            Stopwatch::Ran(before) => match (before, sys::process::thread_usage()) {
                (Ok(before), Ok(after)) => Took::Ran {
                    cpu: after.cpu.saturating_sub(before.cpu),
                    blocked: after.waits != before.waits,
                },
                // Unmeasurable (never seen): as if it ran long.
                _ => Took::Ran {
                    cpu: Duration::MAX,
                    blocked: true,
                },
            },
        }
    }
}

/// What a poll on a reader took.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Took {
    /// Wall time: it includes any preemption.
    Wall(Duration),
    /// What the thread ran, and whether it blocked meanwhile.
    Ran { cpu: Duration, blocked: bool },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str) -> Route {
        let req = h1::Request::builder()
            .method("GET")
            .target(path)
            .build()
            .unwrap();
        Route::of(&req)
    }

    const FAST: Duration = Duration::from_micros(2);
    const SLOW: Duration = Duration::from_millis(2);

    impl Default for CheapRoutes {
        fn default() -> Self {
            CheapRoutes::new(Duration::from_micros(50))
        }
    }

    fn prove(t: &CheapRoutes, r: Route, times: u32) {
        for _ in 0..times {
            t.observed(r, FAST, true);
        }
    }

    #[test]
    fn a_route_is_polled_on_the_reader_only_after_proving_cheap_on_workers() {
        let t = CheapRoutes::default();
        let r = route("/");
        for _ in 0..PROVEN - 1 {
            t.observed(r, FAST, true);
            assert_eq!(t.place(r, 0), Place::Workers);
        }
        t.observed(r, FAST, true);
        assert_eq!(t.place(r, 0), Place::Here);
        assert_eq!(
            t.place(route("/work"), 0),
            Place::Workers,
            "another knows nothing yet"
        );
    }

    #[test]
    fn a_long_or_waiting_first_poll_on_a_worker_starts_the_count_over() {
        let t = CheapRoutes::default();
        let r = route("/sometimes-slow");
        prove(&t, r, PROVEN - 1);
        t.observed(r, SLOW, true);
        t.observed(r, FAST, true);
        assert_eq!(
            t.place(r, 0),
            Place::Workers,
            "a slow poll breaks the streak"
        );
        prove(&t, r, PROVEN - 1);
        t.observed(r, FAST, false);
        assert_eq!(
            t.place(r, 0),
            Place::Workers,
            "a poll that waits is not cheap"
        );
    }

    #[test]
    fn a_long_wall_time_on_the_reader_is_measured_again_before_it_counts() {
        let t = CheapRoutes::default();
        let r = route("/preempted");
        prove(&t, r, PROVEN);
        assert!(!t.answered_here(r, Took::Wall(FAST), true));
        assert_eq!(t.place(r, 0), Place::Here);
        assert!(
            !t.answered_here(r, Took::Wall(SLOW), true),
            "a suspect, no strike"
        );
        assert_eq!(t.place(r, 0), Place::HereMeasured);
        let ran = |cpu, blocked| Took::Ran { cpu, blocked };
        assert!(
            !t.answered_here(r, ran(FAST, false), true),
            "it was preempted"
        );
        assert_eq!(t.place(r, 0), Place::Here, "cleared");
        assert!(!t.answered_here(r, Took::Wall(SLOW), true));
        assert!(
            t.answered_here(r, ran(SLOW, false), true),
            "it really runs long"
        );
        assert_eq!(t.place(r, 0), Place::Workers);
        prove(&t, r, PROVEN);
        assert_eq!(
            t.place(r, 0),
            Place::Workers,
            "one strike: twice the evidence"
        );
        prove(&t, r, PROVEN);
        assert_eq!(t.place(r, 0), Place::Here);
        assert!(!t.answered_here(r, Took::Wall(SLOW), true));
        assert!(
            t.answered_here(r, ran(FAST, true), true),
            "a poll that blocked"
        );
        assert_eq!(t.place(r, 0), Place::Workers);
    }

    #[test]
    fn a_poll_that_must_wait_on_the_reader_sends_the_route_back_at_once() {
        let t = CheapRoutes::default();
        let r = route("/awaits");
        prove(&t, r, PROVEN);
        assert!(t.answered_here(r, Took::Wall(FAST), false));
        assert_eq!(t.place(r, 0), Place::Workers);
    }

    #[test]
    fn strikes_stop_doubling_the_evidence_asked_for() {
        let t = CheapRoutes::default();
        let r = route("/flaky");
        for _ in 0..u32::from(MAX_STRIKES) + 3 {
            prove(&t, r, PROVEN << MAX_DOUBLINGS);
            assert_eq!(t.place(r, 0), Place::Here);
            t.answered_here(r, Took::Wall(FAST), false);
        }
        prove(&t, r, (PROVEN << MAX_DOUBLINGS) - 1);
        assert_eq!(t.place(r, 0), Place::Workers);
        t.observed(r, FAST, true);
        assert_eq!(t.place(r, 0), Place::Here);
    }

    #[test]
    fn nothing_is_answered_on_a_reader_while_work_waits_for_the_workers() {
        let t = CheapRoutes::default();
        let r = route("/");
        prove(&t, r, PROVEN);
        assert_eq!(t.place(r, 1), Place::Workers);
        assert_eq!(t.place(r, 0), Place::Here);
    }

    #[test]
    fn the_method_and_the_path_name_a_route_and_the_query_does_not() {
        assert_eq!(route("/a?x=1"), route("/a?y=2"));
        assert_ne!(route("/a"), route("/b"));
        let post = h1::Request::builder()
            .method("POST")
            .target("/a")
            .build()
            .unwrap();
        assert_ne!(Route::of(&post), route("/a"));
    }

    #[test]
    fn entries_pack_into_one_word_and_back() {
        for suspect in [false, true] {
            let e = Entry {
                tag: 0xdead_beef,
                strikes: 7,
                suspect,
                streak: 12_345,
            };
            assert_eq!(Entry::unpack(e.pack()), e);
        }
    }

    #[test]
    fn a_stopwatch_on_a_suspect_counts_what_the_thread_ran_and_its_waits() {
        let sw = Stopwatch::start(Place::HereMeasured);
        std::thread::sleep(Duration::from_millis(5));
        match sw.stop() {
            Took::Ran { blocked, cpu } => {
                assert!(blocked, "a sleep blocks");
                assert!(cpu < Duration::from_millis(5));
            }
            Took::Wall(_) => panic!("a suspect is measured in what it ran"),
        }
        assert!(matches!(
            Stopwatch::start(Place::Here).stop(),
            Took::Wall(_)
        ));
    }
}
