//! Reading a running server's `/debug/state` from outside: `backlog top` and the lab.

use crate::State;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// GET `/debug/state` from the admin endpoint at `addr` over a plain HTTP/1.1 connection.
pub fn fetch_state(addr: SocketAddr, connect_timeout: Duration) -> Result<State, String> {
    let mut s = TcpStream::connect_timeout(&addr, connect_timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /debug/state HTTP/1.1\r\nHost: backlog\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP response")?;
    if !raw.starts_with(b"HTTP/1.1 200") {
        return Err("the admin endpoint did not answer 200".into());
    }
    serde_json::from_slice(&raw[split + 4..]).map_err(|e| format!("bad state: {e}"))
}
