//! The kernel's side of a server, made visible: the queues a process cannot normally see.
//!
//! - [`listen`]: a listening socket's accept queue — its length now and its limit — from
//!   `TCP_INFO` (`tcpi_unacked` / `tcpi_sacked` on a LISTEN socket).
//! - [`diag`]: sockets in a given TCP state on a port, from netlink `sock_diag` (inet_diag
//!   with a state filter): how many handshakes wait in the SYN queue (SYN_RECV), with a
//!   gauge that bounds the share of a core those walks may take.
//! - [`netstat`]: the host's TcpExt counters from `/proc/net/netstat` (ListenOverflows,
//!   ListenDrops, TCPReqQFullDrop, SYN cookies), as deltas since a baseline.
//!
//! Reading these costs syscalls, so callers sample them off the serving threads (the admin
//! thread), at most once per scrape.

pub mod diag;
pub mod listen;
pub mod netstat;

pub use diag::{listen_queues, syn_recv_count, DiagError, ListenQueues, SynRecvGauge};
pub use listen::{accept_queue, AcceptQueue};
pub use netstat::{TcpExt, TCP_EXT_COUNTERS};
