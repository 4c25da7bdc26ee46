//! The host's TcpExt counters from `/proc/net/netstat`, where the kernel counts what
//! happens to connections that never reach a process: accept-queue overflows, SYN-queue
//! drops, SYN cookies. They are host-wide (per network namespace), so backlog shows them as
//! deltas since it started.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The counters backlog reports, by their /proc/net/netstat names.
pub const TCP_EXT_COUNTERS: &[&str] = &[
    "ListenOverflows",
    "ListenDrops",
    "TCPReqQFullDrop",
    "TCPReqQFullDoCookies",
    "SyncookiesSent",
    "SyncookiesRecv",
    "SyncookiesFailed",
];

/// A reading of the TcpExt counters backlog reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpExt {
    /// Counter name → value.
    pub counters: BTreeMap<String, u64>,
}

impl TcpExt {
    /// Read the calling thread's network namespace's counters now. Missing counters (older
    /// kernels) read as 0. `/proc/net` would follow the process's first thread, which may
    /// sit in another namespace than this one (the lab moves threads into its own).
    pub fn read() -> std::io::Result<TcpExt> {
        Ok(TcpExt::parse(&std::fs::read_to_string(
            "/proc/thread-self/net/netstat",
        )?))
    }

    /// Parse the file's text: pairs of lines, a header of names and a line of values, each
    /// starting with the group name (`TcpExt:`).
    pub fn parse(text: &str) -> TcpExt {
        let mut counters = BTreeMap::new();
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.chunks(2) {
            let [names, values] = pair else { continue };
            if !names.starts_with("TcpExt:") || !values.starts_with("TcpExt:") {
                continue;
            }
            for (name, value) in names
                .split_whitespace()
                .zip(values.split_whitespace())
                .skip(1)
            {
                if TCP_EXT_COUNTERS.contains(&name) {
                    counters.insert(name.to_string(), value.parse().unwrap_or(0));
                }
            }
        }
        for name in TCP_EXT_COUNTERS {
            counters.entry(name.to_string()).or_insert(0);
        }
        TcpExt { counters }
    }

    /// `self - baseline`, counter by counter (counters only grow; a reset reads as 0).
    pub fn since(&self, baseline: &TcpExt) -> TcpExt {
        let counters = self
            .counters
            .iter()
            .map(|(k, v)| {
                let base = baseline.counters.get(k).copied().unwrap_or(0);
                (k.clone(), v.saturating_sub(base))
            })
            .collect();
        TcpExt { counters }
    }

    /// One counter.
    pub fn get(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed ListenOverflows ListenDrops TCPReqQFullDrop\n\
TcpExt: 3 1 0 17 19 2\n\
IpExt: InNoRoutes InTruncatedPkts\n\
IpExt: 0 0\n";

    #[test]
    fn parses_the_counters_and_subtracts_a_baseline() {
        let now = TcpExt::parse(SAMPLE);
        assert_eq!(now.get("ListenOverflows"), 17);
        assert_eq!(now.get("ListenDrops"), 19);
        assert_eq!(now.get("SyncookiesSent"), 3);
        assert_eq!(now.get("TCPReqQFullDoCookies"), 0, "absent reads as 0");
        let base = TcpExt::parse(&SAMPLE.replace("3 1 0 17 19 2", "1 1 0 10 10 2"));
        let delta = now.since(&base);
        assert_eq!(delta.get("ListenOverflows"), 7);
        assert_eq!(delta.get("SyncookiesSent"), 2);
    }

    #[test]
    fn reads_this_host() {
        let now = TcpExt::read().unwrap();
        assert_eq!(now.counters.len(), TCP_EXT_COUNTERS.len());
    }
}
