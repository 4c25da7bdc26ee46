//! Waiting on a condition (a counter, the admin state, a file) instead of sleeping a guessed
//! time: fast when the system is fast, patient when the machine is loaded.

use std::time::{Duration, Instant};

/// Poll `cond` every 10 ms until it holds; panic naming `what` after `timeout`. Returns how
/// long it took.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
