//! Per-thread connection deadlines on a hashed timer wheel.
//!
//! Each reader thread keeps one wheel for all its connections: no thread, no timerfd and no
//! syscall per connection. A connection has at most one live entry. Deadlines mostly move
//! later (each request pushes the idle deadline out), and moving one later costs nothing
//! here: the connection stores its real deadline, and when its entry's slot comes round the
//! owner checks it and, if the deadline moved, re-inserts it. Only a deadline moving
//! *earlier* inserts a new entry (the old one turns stale and is skipped). So a keep-alive
//! request costs a field write, and a wheel operation happens about once per timeout period
//! per connection — cheap enough for 100k connections on one thread.
//!
//! Resolution is one tick ([`TICK`]); a deadline fires at most one tick late, never early.

use std::time::{Duration, Instant};

/// Wheel resolution.
pub(crate) const TICK: Duration = Duration::from_millis(100);
/// Slots in the wheel: deadlines further out than `SLOTS * TICK` take extra rounds.
const SLOTS: usize = 1024;

/// One scheduled wake-up: the owner's key, a generation to detect reuse, and the tick it is
/// for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: usize,
    pub(crate) gen: u32,
    pub(crate) tick: u64,
}

pub(crate) struct TimerWheel {
    origin: Instant,
    slots: Vec<Vec<Entry>>,
    /// The last tick processed.
    cursor: u64,
    len: usize,
}

impl TimerWheel {
    pub(crate) fn new(origin: Instant) -> Self {
        TimerWheel {
            origin,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            cursor: 0,
            len: 0,
        }
    }

    /// The tick at or after `when` (deadlines round up, so they never fire early).
    pub(crate) fn tick_of(&self, when: Instant) -> u64 {
        let nanos = when.saturating_duration_since(self.origin).as_nanos();
        let tick = TICK.as_nanos();
        nanos.div_ceil(tick) as u64
    }

    /// Schedule `key` for `when`; returns the tick it was filed under (the owner keeps it
    /// to recognise this entry later).
    pub(crate) fn insert(&mut self, key: usize, gen: u32, when: Instant) -> u64 {
        let tick = self.tick_of(when).max(self.cursor + 1);
        self.slots[(tick % SLOTS as u64) as usize].push(Entry { key, gen, tick });
        self.len += 1;
        tick
    }

    /// Entries in the wheel, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Move the wheel to `now`, appending every entry now due to `due`.
    pub(crate) fn advance(&mut self, now: Instant, due: &mut Vec<Entry>) {
        let elapsed = now.saturating_duration_since(self.origin).as_nanos() / TICK.as_nanos();
        let target = (elapsed as u64).max(self.cursor);
        // Far behind (a long sleep with an empty wheel): one lap visits every slot.
        let laps = (target - self.cursor).min(SLOTS as u64);
        let start = target - laps;
        for t in start + 1..=target {
            let slot = &mut self.slots[(t % SLOTS as u64) as usize];
            let before = slot.len();
            slot.retain(|e| {
                if e.tick <= target {
                    due.push(*e);
                    false
                } else {
                    true
                }
            });
            self.len -= before - slot.len();
        }
        self.cursor = target;
    }

    /// How long the loop may sleep before the next tick that could hold a due entry.
    pub(crate) fn next_wake(&self, now: Instant) -> Option<Duration> {
        if self.len == 0 {
            return None;
        }
        let next = self.origin + TICK * (self.cursor + 1) as u32;
        Some(
            next.saturating_duration_since(now)
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
                tick: SLOTS as u64 + 5
            }]
        );
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
        let per_slot: usize = w.slots.iter().map(|s| s.capacity()).max().unwrap();
        assert!(
            per_slot < n / 100,
            "entries spread over the slots ({per_slot} in the fullest)"
        );
    }
}
