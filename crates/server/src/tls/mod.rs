//! TLS termination with rustls: the certificates a server presents ([`keys`]) and each
//! connection's record layer (`session`).
//!
//! TLS sits inside the I/O-free connection core, between the bytes a driver moves and the
//! HTTP it parses: a driver reads ciphertext into the connection and sends what the
//! connection gives it, whichever driver it is, so TLS works the same on epoll and io_uring
//! and on every shape. Who runs the handshake — the reader that will serve the connection,
//! or an acceptor that hands over an established session — is part of the topology.

pub mod keys;
pub(crate) mod session;

pub use keys::{Tls, TlsError};
pub use session::{Handshake, TlsFailure};
