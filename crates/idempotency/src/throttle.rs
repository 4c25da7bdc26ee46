//! Rate-limited warnings. During a store outage every request fails the same way; one WARN
//! per request (≈620 lines in 5 s, measured) buries the log and costs the serving threads a
//! write each. The first failure is logged at once, then at most one per period, carrying
//! how many like it were left out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Admits one event per period and counts the rest.
#[derive(Debug)]
pub struct Throttle {
    period: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// At most one admitted event per `period`.
    pub const fn new(period: Duration) -> Self {
        Throttle {
            period,
            state: Mutex::new(State {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` if this event should be logged now, `n` being how many were suppressed since
    /// the last one logged; `None` if it should be counted and dropped.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match st.last {
            Some(last) if now.saturating_duration_since(last) < self.period => {
                st.suppressed += 1;
                None
            }
            _ => {
                st.last = Some(now);
                Some(std::mem::take(&mut st.suppressed))
            }
        }
    }
}

/// An error and its causes, `: `-separated. Some errors print only their kind
/// (PostgreSQL's says "db error") and keep the database's message in their source.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_period_with_a_count_of_the_rest() {
        let t = Throttle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(t.admit(t0), Some(0));
        for i in 1..=620 {
            assert_eq!(t.admit(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(t.admit(t0 + Duration::from_millis(1001)), Some(620));
        assert_eq!(t.admit(t0 + Duration::from_millis(1002)), None);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("db error")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("FATAL: the database system is shutting down")]
    struct Inner;

    #[test]
    fn the_chain_includes_the_cause() {
        assert_eq!(
            chain(&Outer(Inner)),
            "db error: FATAL: the database system is shutting down"
        );
    }
}
