//! What makes a retry "the same request": method, target and a digest of the body. A key
//! reused with a different fingerprint is a client bug, answered with 422.

use h1::Request;
use sha2::{Digest, Sha256};

/// SHA-256 over the method, the target and the body, each length-prefixed so that no two
/// different requests can run together into the same bytes.
pub fn of(req: &Request) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [
        req.method().as_str().as_bytes(),
        req.target().as_bytes(),
        &req.body()[..],
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}
