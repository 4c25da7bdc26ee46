//! Why a server could not start: the one error type the builder returns, kept apart so that
//! the parts that bind sockets and wire threads report it without depending on the builder.

use std::net::SocketAddr;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another socket holds the address.
    #[error("address {addr} is already in use")]
    AddrInUse {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// bind, listen or a socket option failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A configuration that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// `--io uring` on a host whose kernel cannot provide it (disabled, denied, too old).
    #[error("--io uring: {0}")]
    Uring(sys::uring::Unavailable),
    /// Any other system call failed while setting up.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}
