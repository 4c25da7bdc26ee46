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
//! Histograms are per thread, fixed buckets from 10 µs to 10 s (atomics; the owner writes,
//! the admin endpoint reads).

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in µs: 10 µs to 10 s. One more bucket counts what is longer.
pub const BUCKETS_US: [u64; 19] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

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
        let us = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKETS_US.partition_point(|&bound| bound < us);
        let count = &self.counts[i];
        count.store(count.load(Relaxed) + 1, Relaxed);
        self.sum_us
            .store(self.sum_us.load(Relaxed).saturating_add(us), Relaxed);
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
