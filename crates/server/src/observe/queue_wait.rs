//! How long connections and requests waited in the kernel's queues before one of our
//! threads took them: the accept queue (handshake done, not yet accepted) and the receive
//! queue (bytes arrived, not yet read).
//!
//! backlog shows how long the queues are; this shows what they cost a request, which is what
//! tells a person which arrangement is hurting them. The kernel stamps every segment it
//! receives (`SO_TIMESTAMPNS`, on the listening socket and inherited by accepted ones); a
//! read through `recvmsg` — which replaces `read`, so the syscall count stays — returns the
//! stamp with the bytes. Then:
//!
//! - receive-queue wait of a request = when our thread read its first bytes − when the kernel
//!   received them. For TCP the stamp is that of the last segment a read takes, so a request
//!   whose bytes arrived over a long time counts from its last segment (an underestimate);
//!   requests pipelined in one read share their read's wait.
//! - accept-queue wait of a connection = when `accept` returned it − when the kernel received
//!   its first bytes, for connections whose first bytes arrived before the accept (HTTP
//!   clients send the request with or right after the handshake's last ACK, so that is within
//!   a round trip of the handshake's completion). A connection still silent when accepted
//!   records 0: it left the queue before it spoke. (TCP_INFO's last-ACK age at accept was the
//!   other candidate: millisecond resolution, one more syscall per connection, and on this
//!   kernel it moves to the data's arrival as soon as the client sends, so it measures the
//!   same thing, worse.)
//!
//! The kernel stamps packets only once some socket on the host has asked, and it turns
//! stamping on a moment after the first one asks (a deferred static key): in a server that is
//! the first on its host to ask, the first packets after start can come unstamped, and are
//! not counted.
//!
//! A timed read costs more than a plain one (`recvmsg` against `read`: about 0.2 µs on
//! this machine, 3–5% of a keep-alive request), so by default (`--queue-timing sampled`) the
//! epoll driver times only: every connection's first request (every accept-queue wait);
//! every read of a round that followed a wait of at least [`TIME_EVERY_READ_AFTER_IDLE`] (an
//! idle loop, where timing costs nothing that matters, so a lightly loaded server's counts
//! are exact); every read more than [`TIME_EVERY_READ_AFTER`] after its loop's previous round
//! began (a handler holding the loop: the long waits); and one in [`SAMPLE_EVERY`] of the
//! rest — a busy loop's — each counted for that many. Which stratum a read falls in depends
//! on the loop's clock, never on the wait being measured, and every stratum is counted, so the
//! counts and percentiles remain estimates of every request's; `on` times every read.
//!
//! Histograms are per thread, fixed buckets from 10 µs to 10 s (atomics; the owner writes,
//! the admin endpoint reads).

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// `--queue-timing sampled`: one in this many of the requests a thread reads is timed, and
/// counted for this many, when no read can have waited long (below); every other read is
/// plain `read`. Systematic sampling of a stream whose waits do not depend on their place
/// in it, so the histograms stay unbiased estimates, counts included.
pub const SAMPLE_EVERY: u32 = 16;
const _: () = assert!(SAMPLE_EVERY < 31, "a weight is kept in 5 bits");
/// `--queue-timing sampled`: every read is timed once this long has passed since the loop's
/// previous round began. Bytes a loop is told about in a round arrived after the previous
/// round's wait returned, so until then no wait can exceed this; past it (a handler that
/// held the loop, a burst far beyond what a round serves) the waits worth seeing are all
/// counted, each for one. Not 1 ms, as it was: a loop saturated by 512 keep-alive
/// connections runs rounds of 3–10 ms, and so timed 60% of its reads (`recvmsg` instead of
/// `read`, about 3% of its CPU) to count waits the one-in-16 sample estimates just as well.
pub const TIME_EVERY_READ_AFTER: Duration = Duration::from_millis(100);
/// `--queue-timing sampled`: every read of a round is timed when the loop's wait before it
/// lasted this long — an idle loop. A loop serving a saturating load that its client limits
/// also sleeps, but for tens of µs between batches, and is sampled.
pub const TIME_EVERY_READ_AFTER_IDLE: Duration = Duration::from_millis(1);

/// Upper bounds of the buckets, in µs: 10 µs to 10 s. One more bucket counts what is longer.
pub const BUCKETS_US: [u64; 19] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Whether to measure how long connections and requests wait in the kernel's queues (see
/// this module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueTiming {
    /// Receive timestamps on every listening socket; every read goes through `recvmsg` (the
    /// same one syscall) and counts each request's receive-queue wait and each connection's
    /// accept-queue wait.
    On,
    /// Every connection's accept-queue wait and first request, and one in
    /// [`SAMPLE_EVERY`] of the later requests each thread
    /// reads (epoll; under io_uring every request, as `On`). `recvmsg` costs more than `read`
    /// on every request (about 0.2 µs here, 3–5% of a keep-alive request), so the default
    /// pays it where a wait is likeliest and samples the rest.
    #[default]
    Sampled,
    /// Plain `read`s; nothing counted.
    Off,
}

impl QueueTiming {
    /// Every setting.
    pub const ALL: [QueueTiming; 3] = [QueueTiming::On, QueueTiming::Sampled, QueueTiming::Off];

    /// Whether listening sockets ask the kernel for receive timestamps.
    pub fn stamps(self) -> bool {
        self != QueueTiming::Off
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            QueueTiming::On => "on",
            QueueTiming::Sampled => "sampled",
            QueueTiming::Off => "off",
        }
    }
}

/// Which reads a reader times, for the reads it makes itself (epoll): every one
/// (`--queue-timing on`), none (`off`), or the strata above (`sampled`).
#[derive(Debug)]
pub(crate) struct ReadTiming {
    /// Requests begun by this thread's reads, to time one in [`SAMPLE_EVERY`].
    sampled: u32,
    /// When the loop's previous round began (see [`TIME_EVERY_READ_AFTER`]).
    previous_round: Instant,
    /// This round followed an idle wait (see [`TIME_EVERY_READ_AFTER_IDLE`]).
    after_idle: bool,
}

impl ReadTiming {
    pub(crate) fn new(now: Instant) -> Self {
        ReadTiming {
            sampled: 0,
            previous_round: now,
            after_idle: false,
        }
    }

    /// The loop began a round after waiting `waited` for events; the previous round began at
    /// `previous`.
    pub(crate) fn round_began(&mut self, previous: Instant, waited: Duration) {
        self.previous_round = previous;
        self.after_idle = waited >= TIME_EVERY_READ_AFTER_IDLE;
    }

    /// The weight the next read's wait counts for, or `None` for a plain read.
    /// `first_pending`: the connection's accept-queue wait is still to be counted;
    /// `starts`: the read begins a request.
    pub(crate) fn weight(
        &mut self,
        mode: QueueTiming,
        first_pending: bool,
        starts: bool,
    ) -> Option<u8> {
        match mode {
            QueueTiming::On => Some(1),
            QueueTiming::Off => None,
            QueueTiming::Sampled if first_pending => Some(1),
            // The rest of a request already counted (or not sampled): nothing to time.
            QueueTiming::Sampled if !starts => None,
            QueueTiming::Sampled if self.after_idle => Some(1),
            QueueTiming::Sampled
                if Instant::now().duration_since(self.previous_round) >= TIME_EVERY_READ_AFTER =>
            {
                Some(1)
            }
            QueueTiming::Sampled => {
                self.sampled = self.sampled.wrapping_add(1);
                self.sampled
                    .is_multiple_of(SAMPLE_EVERY)
                    .then_some(SAMPLE_EVERY as u8)
            }
        }
    }
}

/// A request's receive-queue wait as its connection keeps it until the request is parsed,
/// in 4 bytes (every connection carries one): µs in the low 27 bits (capped at 134 s; the
/// last bucket ends at 10 s), how many requests it stands for in the top 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PendingWait(u32);

impl PendingWait {
    /// No wait known: the read was not timed, or the kernel gave no stamp.
    pub(crate) const NONE: PendingWait = PendingWait(u32::MAX);
    const US_BITS: u32 = 27;
    const US_MAX: u32 = (1 << Self::US_BITS) - 1;

    pub(crate) fn new(wait: Duration, weight: u32) -> Self {
        let us = u32::try_from(wait.as_micros()).map_or(Self::US_MAX, |us| us.min(Self::US_MAX));
        PendingWait(weight.min(SAMPLE_EVERY) << Self::US_BITS | us)
    }

    /// The wait and its weight.
    pub(crate) fn get(self) -> Option<(Duration, u32)> {
        (self != Self::NONE).then(|| {
            (
                Duration::from_micros((self.0 & Self::US_MAX).into()),
                self.0 >> Self::US_BITS,
            )
        })
    }
}

/// One thread's histogram of waits.
#[derive(Debug, Default)]
pub(crate) struct WaitHistogram {
    counts: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl WaitHistogram {
    /// Count one wait. Only the owning thread records (readers load), so a load and a store
    /// do what `fetch_add` would, without a locked instruction on every request.
    pub(crate) fn record(&self, wait: Duration) {
        self.record_for(wait, 1);
    }

    /// Count one wait that stands for `weight` requests (a sampled one: see
    /// [`SAMPLE_EVERY`]).
    pub(crate) fn record_for(&self, wait: Duration, weight: u32) {
        let us = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKETS_US.partition_point(|&bound| bound < us);
        let count = &self.counts[i];
        count.store(count.load(Relaxed) + u64::from(weight), Relaxed);
        self.sum_us.store(
            self.sum_us
                .load(Relaxed)
                .saturating_add(us.saturating_mul(weight.into())),
            Relaxed,
        );
    }

    pub(crate) fn snapshot(&self) -> WaitSnapshot {
        WaitSnapshot {
            counts: self.counts.iter().map(|c| c.load(Relaxed)).collect(),
            sum_us: self.sum_us.load(Relaxed),
        }
    }
}

/// Waits counted so far: per bucket of [`BUCKETS_US`] (the last entry: longer than 10 s),
/// and their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitSnapshot {
    /// Waits per bucket (not cumulative).
    pub counts: Vec<u64>,
    /// Sum of every wait, in µs.
    pub sum_us: u64,
}

impl WaitSnapshot {
    /// How many waits were counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (0.5 for the median), interpolated within its bucket; `None` with
    /// no waits counted.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, &n) in self.counts.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if (seen + n) as f64 >= rank {
                let low = if i == 0 { 0 } else { BUCKETS_US[i - 1] };
                let high = BUCKETS_US.get(i).copied().unwrap_or(low * 2);
                let within = (rank - seen as f64) / n as f64;
                let us = low as f64 + within * (high - low) as f64;
                return Some(Duration::from_micros(us as u64));
            }
            seen += n;
        }
        None
    }

    /// Add `other`'s waits to these (a whole server from its threads).
    pub fn merge(&mut self, other: &WaitSnapshot) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum_us += other.sum_us;
    }

    /// The waits counted since `earlier` (a snapshot of the same histogram).
    pub fn since(&self, earlier: &WaitSnapshot) -> WaitSnapshot {
        WaitSnapshot {
            counts: self
                .counts
                .iter()
                .enumerate()
                .map(|(i, &n)| n.saturating_sub(earlier.counts.get(i).copied().unwrap_or(0)))
                .collect(),
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_times_an_idle_or_held_loop_whole_and_samples_a_busy_one() {
        let now = Instant::now();
        let weights = |t: &mut ReadTiming| -> Vec<Option<u8>> {
            (0..SAMPLE_EVERY)
                .map(|_| t.weight(QueueTiming::Sampled, false, true))
                .collect()
        };
        let mut busy = ReadTiming::new(now);
        busy.round_began(now, Duration::from_micros(20));
        let w = weights(&mut busy);
        assert_eq!(
            w.iter().flatten().count(),
            1,
            "one in {SAMPLE_EVERY}: {w:?}"
        );
        assert!(w.iter().flatten().all(|&x| x == SAMPLE_EVERY as u8));

        let mut idle = ReadTiming::new(now);
        idle.round_began(now, TIME_EVERY_READ_AFTER_IDLE);
        assert!(weights(&mut idle).iter().all(|&w| w == Some(1)));

        let mut held = ReadTiming::new(now);
        let long_ago = now
            .checked_sub(TIME_EVERY_READ_AFTER)
            .expect("the monotonic clock has run longer than the threshold");
        held.round_began(long_ago, Duration::ZERO);
        assert!(weights(&mut held).iter().all(|&w| w == Some(1)));

        // Mid-request reads are never timed; a connection's first is, whatever the round.
        assert_eq!(busy.weight(QueueTiming::Sampled, false, false), None);
        assert_eq!(busy.weight(QueueTiming::Sampled, true, false), Some(1));
    }

    #[test]
    fn a_pending_wait_keeps_its_weight_and_caps_its_length() {
        let w = PendingWait::new(Duration::from_micros(1234), SAMPLE_EVERY);
        assert_eq!(w.get(), Some((Duration::from_micros(1234), SAMPLE_EVERY)));
        let long = PendingWait::new(Duration::from_secs(1000), 1);
        assert_eq!(long.get(), Some((Duration::from_micros((1 << 27) - 1), 1)));
        assert_eq!(PendingWait::NONE.get(), None);
    }

    #[test]
    fn a_weighted_wait_counts_for_its_weight() {
        let h = WaitHistogram::default();
        h.record_for(Duration::from_micros(30), SAMPLE_EVERY);
        h.record(Duration::from_micros(30));
        let s = h.snapshot();
        assert_eq!(s.count(), u64::from(SAMPLE_EVERY) + 1);
        assert_eq!(s.sum_us, 30 * (u64::from(SAMPLE_EVERY) + 1));
    }

    #[test]
    fn waits_land_in_their_buckets_and_quantiles_follow() {
        let h = WaitHistogram::default();
        assert_eq!(h.snapshot().quantile(0.5), None);
        for _ in 0..98 {
            h.record(Duration::from_micros(30)); // (25, 50]
        }
        h.record(Duration::from_millis(300)); // (250 ms, 500 ms]
        h.record(Duration::from_secs(20)); // over 10 s
        let s = h.snapshot();
        assert_eq!(s.count(), 100);
        assert_eq!(s.counts[2], 98);
        assert_eq!(s.counts[14], 1);
        assert_eq!(s.counts[19], 1);
        let p50 = s.quantile(0.5).unwrap();
        assert!(p50 > Duration::from_micros(25) && p50 <= Duration::from_micros(50));
        let p99 = s.quantile(0.99).unwrap();
        assert!(
            p99 > Duration::from_millis(250) && p99 <= Duration::from_millis(500),
            "{p99:?}"
        );
        assert!(s.quantile(1.0).unwrap() >= Duration::from_secs(10));

        let mut total = s.clone();
        total.merge(&s);
        assert_eq!(total.count(), 200);
        assert_eq!(total.since(&s), s);
    }
}
