//! Per-thread connection deadlines on a hashed timer wheel.
//!
//! Each reader thread keeps one wheel for all its connections: no thread, no timerfd and no
//! syscall per connection. A connection has at most one entry. Deadlines mostly move later
//! (each request pushes the idle deadline out), and moving one later costs nothing here: the
//! connection stores its real deadline, and when its entry's slot comes round the owner
//! checks it and, if the deadline moved, files it again. Only a deadline moving *earlier*
//! re-files the entry at once. So a keep-alive request costs a field write, and a wheel
//! operation happens about once per timeout period per connection — cheap enough for 100k
//! connections on one thread.
//!
//! Entries live in one slab, linked into their slot's list, and a connection that closes
//! takes its entry out ([`TimerWheel::remove`], O(1)). The wheel's memory is therefore the
//! connections open at its busiest, never the connections that came and went within a
//! timeout: with entries left behind until their tick, a churn of 36,000 connections a
//! second kept 360,000 entries for the 10 s header timeout (19 MB that stayed after the
//! load), and the ceiling followed the churn rate.
//!
//! Resolution is one tick ([`TICK`]); a deadline fires at most one tick late, never early.

use std::time::{Duration, Instant};

/// Wheel resolution.
pub(crate) const TICK: Duration = Duration::from_millis(100);
/// Slots in the wheel: deadlines further out than `SLOTS * TICK` take extra rounds.
const SLOTS: usize = 1024;
/// The end of a slot's list.
const NIL: u32 = u32::MAX;

/// One due wake-up: the owner's key, a generation to detect reuse, and the tick it was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: usize,
    pub(crate) gen: u32,
    pub(crate) tick: u32,
}

/// Where a connection's entry is filed: what its owner keeps to recognise the entry when it
/// fires and to take it out when the connection closes. 8 bytes, with a sentinel for "none"
/// instead of an `Option` (every connection carries one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerRef {
    node: u32,
    /// The tick it is filed for (ticks of 100 ms: u32 lasts 13 years of uptime).
    pub(crate) tick: u32,
}

impl TimerRef {
    /// No entry in the wheel.
    pub(crate) const NONE: TimerRef = TimerRef {
        node: NIL,
        tick: u32::MAX,
    };

    pub(crate) fn is_none(self) -> bool {
        self.node == NIL
    }
}

/// An entry, linked into its slot's list.
struct Node {
    entry: Entry,
    prev: u32,
    next: u32,
}

/// Timer nodes an empty wheel keeps room for (~24 bytes each).
const KEEP_NODES: usize = 1024;

pub(crate) struct TimerWheel {
    origin: Instant,
    nodes: slab::Slab<Node>,
    /// Each slot's first node, or [`NIL`].
    heads: Box<[u32; SLOTS]>,
    /// The last tick processed.
    cursor: u32,
    /// When the tick after `cursor` begins: until then advancing has nothing to do, which
    /// is what a busy loop finds on nearly every round (one comparison, no clock math).
    next_tick_at: Instant,
}

impl TimerWheel {
    pub(crate) fn new(origin: Instant) -> Self {
        TimerWheel {
            origin,
            nodes: slab::Slab::new(),
            heads: Box::new([NIL; SLOTS]),
            cursor: 0,
            next_tick_at: origin + TICK,
        }
    }

    /// The tick at or after `when` (deadlines round up, so they never fire early).
    pub(crate) fn tick_of(&self, when: Instant) -> u32 {
        // In u64 (584 years of nanoseconds): u128 division is a call per request.
        let nanos = when.saturating_duration_since(self.origin).as_nanos() as u64;
        nanos
            .div_ceil(TICK.as_nanos() as u64)
            .min(u32::MAX as u64 - 1) as u32
    }

    /// The deadlines that `timer`'s entry serves as it is filed: every one after this
    /// instant (its tick is the entry's or later, and the owner re-files a deadline that
    /// moved when the entry fires). Only a deadline at or before it needs the entry moved
    /// earlier. The owner keeps it beside the reference, so that a deadline moving later —
    /// each keep-alive request — is one comparison of instants, no clock arithmetic.
    pub(crate) fn serves_after(&self, timer: TimerRef) -> Instant {
        self.origin + TICK * timer.tick.saturating_sub(1)
    }

    /// Schedule `key` for `when`; the owner keeps the returned reference.
    pub(crate) fn insert(&mut self, key: usize, gen: u32, when: Instant) -> TimerRef {
        let tick = self.tick_of(when).max(self.cursor + 1);
        let slot = tick as usize % SLOTS;
        let head = self.heads[slot];
        let node = self.nodes.insert(Node {
            entry: Entry { key, gen, tick },
            prev: NIL,
            next: head,
        }) as u32;
        if head != NIL {
            self.nodes[head as usize].prev = node;
        }
        self.heads[slot] = node;
        TimerRef { node, tick }
    }

    /// Take out `key`'s entry that `timer` refers to (its connection closed, or re-files it
    /// earlier). A reference to an entry that already fired is ignored, even once its node
    /// holds another entry.
    pub(crate) fn remove(&mut self, key: usize, timer: TimerRef) {
        let Some(node) = self.nodes.get(timer.node as usize) else {
            return;
        };
        if node.entry.tick != timer.tick || node.entry.key != key {
            return; // fired, and the node reused for another entry
        }
        self.unlink(timer.node);
    }

    fn unlink(&mut self, index: u32) -> Entry {
        let node = self.nodes.remove(index as usize);
        if node.prev == NIL {
            self.heads[node.entry.tick as usize % SLOTS] = node.next;
        } else {
            self.nodes[node.prev as usize].next = node.next;
        }
        if node.next != NIL {
            self.nodes[node.next as usize].prev = node.prev;
        }
        if self.nodes.is_empty() && self.nodes.capacity() > KEEP_NODES {
            // Give back the slab a burst grew (its keys are free to reuse now); a small one
            // is kept, or a reader with one connection at a time would free it on each
            // close and allocate it again on the next accept.
            self.nodes.shrink_to_fit();
        }
        node.entry
    }

    /// Entries in the wheel.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Bytes the wheel holds beyond its fixed slot table: the entries' slab.
    #[cfg(test)]
    fn entry_bytes(&self) -> usize {
        // A slab slot is at least its value; vacant slots cost the same.
        self.nodes.capacity() * std::mem::size_of::<Node>()
    }

    /// Move the wheel to `now`, appending every entry now due to `due`.
    pub(crate) fn advance(&mut self, now: Instant, due: &mut Vec<Entry>) {
        if now < self.next_tick_at {
            return;
        }
        let nanos = now.saturating_duration_since(self.origin).as_nanos() as u64;
        let elapsed = nanos / TICK.as_nanos() as u64;
        let target = (elapsed.min(u32::MAX as u64 - 2) as u32).max(self.cursor);
        // Far behind (a long sleep with an empty wheel): one lap visits every slot.
        let laps = (target - self.cursor).min(SLOTS as u32);
        let start = target - laps;
        for t in start + 1..=target {
            let mut at = self.heads[t as usize % SLOTS];
            while at != NIL {
                let node = &self.nodes[at as usize];
                let next = node.next;
                if node.entry.tick <= target {
                    due.push(self.unlink(at));
                }
                at = next;
            }
        }
        self.cursor = target;
        self.next_tick_at = self.origin + TICK * (target + 1);
    }

    /// How long the loop may sleep before the next tick that could hold a due entry.
    pub(crate) fn next_wake(&self, now: Instant) -> Option<Duration> {
        if self.nodes.is_empty() {
            return None;
        }
        Some(
            self.next_tick_at
                .saturating_duration_since(now)
                .max(Duration::from_millis(1)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_at_the_deadline_never_early() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        w.insert(1, 0, t0 + Duration::from_millis(250));
        let mut due = Vec::new();
        w.advance(t0 + Duration::from_millis(200), &mut due);
        assert!(due.is_empty());
        w.advance(t0 + Duration::from_millis(299), &mut due);
        assert!(due.is_empty(), "the deadline rounds up to the 300 ms tick");
        w.advance(t0 + Duration::from_millis(300), &mut due);
        assert_eq!(due.len(), 1);
        assert_eq!(w.len(), 0);
        assert_eq!(w.next_wake(t0), None);
    }

    #[test]
    fn deadlines_beyond_one_lap_wait_their_round() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let far = t0 + TICK * (SLOTS as u32 + 5);
        w.insert(7, 0, far);
        let mut due = Vec::new();
        w.advance(t0 + TICK * 10, &mut due);
        assert!(due.is_empty());
        w.advance(far - TICK, &mut due);
        assert!(due.is_empty());
        w.advance(far + TICK * 2, &mut due);
        assert_eq!(
            due,
            vec![Entry {
                key: 7,
                gen: 0,
                tick: SLOTS as u32 + 5
            }]
        );
    }

    /// A deadline after what an entry serves keeps the entry (its tick is the entry's or
    /// later); one at or before it needs an earlier tick — the one comparison the owner
    /// makes on every request instead of the tick arithmetic.
    #[test]
    fn an_entry_serves_exactly_the_deadlines_of_its_tick_and_later() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        for when in [
            t0 + TICK * 7,
            t0 + TICK * 7 + Duration::from_nanos(1),
            t0 + TICK * 7 - Duration::from_nanos(1),
            t0 + Duration::from_millis(1234),
            t0,
        ] {
            let timer = w.insert(1, 0, when);
            let after = w.serves_after(timer);
            // A deadline already due is filed for the next tick, which does not serve it:
            // the owner files it again, as it did before this shortcut.
            assert_eq!(when > after, w.tick_of(when) == timer.tick, "{when:?}");
            for probe in [
                after - Duration::from_nanos(1),
                after,
                after + Duration::from_nanos(1),
                after + TICK,
            ] {
                let later_or_same_tick = w.tick_of(probe) >= timer.tick;
                assert_eq!(
                    probe > after,
                    later_or_same_tick,
                    "{probe:?} against {timer:?}"
                );
            }
            w.remove(1, timer);
        }
    }

    #[test]
    fn a_long_sleep_catches_up_in_one_lap() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        for i in 0..10 {
            w.insert(i, 0, t0 + TICK * (i as u32 + 1));
        }
        let mut due = Vec::new();
        w.advance(t0 + Duration::from_secs(3600), &mut due);
        assert_eq!(due.len(), 10);
    }

    /// 100k connections: every entry is filed once and handed back once, at its tick; the
    /// wheel's memory is the entries themselves.
    #[test]
    fn a_hundred_thousand_deadlines() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let n = 100_000usize;
        for key in 0..n {
            // Spread over 60 s, like idle keep-alive connections.
            let when = t0 + Duration::from_millis((key as u64 * 7919) % 60_000);
            w.insert(key, 0, when);
        }
        assert_eq!(w.len(), n);
        let mut due = Vec::new();
        let mut fired = vec![false; n];
        let mut now = t0;
        while now < t0 + Duration::from_secs(61) {
            now += TICK;
            due.clear();
            w.advance(now, &mut due);
            for e in &due {
                let when = t0 + Duration::from_millis((e.key as u64 * 7919) % 60_000);
                assert!(now >= when, "fired early");
                assert!(now - when <= TICK * 2, "fired late");
                assert!(!fired[e.key], "fired twice");
                fired[e.key] = true;
            }
        }
        assert!(fired.iter().all(|&f| f));
        assert_eq!(w.len(), 0);
        assert_eq!(w.entry_bytes(), 0, "an empty wheel gives its entries back");
    }

    /// One connection at a time (a quiet server, a client that reconnects): the emptied
    /// wheel keeps its small slab, so each new connection's entry needs no allocation.
    #[test]
    fn an_emptied_small_wheel_keeps_its_room() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        for key in 0..100 {
            let timer = w.insert(key, 0, t0 + Duration::from_secs(10));
            w.remove(key, timer);
            assert_eq!(w.len(), 0);
            let kept = w.entry_bytes();
            assert!(kept > 0, "the slab was freed on emptying");
            assert!(kept <= KEEP_NODES * std::mem::size_of::<Node>());
        }
    }

    /// Connection churn: 36,000 connections a second for 20 s, each filing a 10 s deadline
    /// and closing 1 ms later. Only the open ones (36 at a time) hold entries, so the wheel
    /// stays at a few KiB whatever the rate; entries left behind until their tick would have
    /// held 360,000.
    #[test]
    fn churned_connections_take_their_entries_with_them() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let mut open: std::collections::VecDeque<(usize, TimerRef)> = Default::default();
        let mut due = Vec::new();
        let mut peak = 0;
        for i in 0..720_000usize {
            let now = t0 + Duration::from_micros(i as u64 * 1_000_000 / 36_000);
            open.push_back((i, w.insert(i % 1_000, 0, now + Duration::from_secs(10))));
            while open.len() > 36 {
                let (i, timer) = open.pop_front().unwrap();
                w.remove(i % 1_000, timer);
            }
            w.advance(now, &mut due);
            peak = peak.max(w.entry_bytes());
        }
        assert!(due.is_empty(), "nothing lived to its deadline");
        assert_eq!(w.len(), 36);
        assert!(peak < 64 * 1024, "peak {peak} bytes of entries");
    }

    #[test]
    fn a_removed_entry_never_fires_and_a_stale_reference_is_ignored() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let a = w.insert(1, 0, t0 + TICK * 3);
        let b = w.insert(2, 0, t0 + TICK * 3);
        let c = w.insert(3, 0, t0 + TICK * 3);
        w.remove(2, b);
        w.remove(2, b); // twice: ignored
        let mut due = Vec::new();
        w.advance(t0 + TICK * 3, &mut due);
        let keys: Vec<usize> = due.iter().map(|e| e.key).collect();
        assert_eq!(keys.len(), 2);
        assert!(keys.contains(&1) && keys.contains(&3));
        // Fired already: removing them now does nothing, even once the slab reuses the node.
        let d = w.insert(4, 0, t0 + TICK * 10);
        w.remove(1, a);
        w.remove(3, c);
        assert_eq!(w.len(), 1);
        w.remove(4, d);
        assert_eq!(w.len(), 0);
    }
}
