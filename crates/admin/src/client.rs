//! Reading a running server's admin endpoint from outside: `/debug/state` for `backlog top`
//! and the lab, `/debug/connections` for a supervisor listing its workers' connections.

use crate::State;
use backlog_server::introspect::{ConnInfo, Connections};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// GET `/debug/state` from the admin endpoint at `addr` over a plain HTTP/1.1 connection.
pub fn fetch_state(addr: SocketAddr, connect_timeout: Duration) -> Result<State, String> {
    let raw = fetch(addr, "/debug/state", connect_timeout)?;
    serde_json::from_slice(&raw).map_err(|e| format!("bad state: {e}"))
}

/// GET `/debug/connections?limit=N` from the admin endpoint at `addr`.
pub fn fetch_connections(
    addr: SocketAddr,
    limit: usize,
    connect_timeout: Duration,
) -> Result<Connections, String> {
    #[derive(serde::Deserialize)]
    struct Listing {
        total: usize,
        connections: Vec<ConnInfo>,
    }
    let raw = fetch(
        addr,
        &format!("/debug/connections?limit={limit}"),
        connect_timeout,
    )?;
    let listing: Listing = serde_json::from_slice(&raw).map_err(|e| format!("bad listing: {e}"))?;
    Ok(Connections {
        total: listing.total,
        shown: listing.connections,
    })
}

/// The body of a 200 answer to GET `path`.
fn fetch(addr: SocketAddr, path: &str, connect_timeout: Duration) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect_timeout(&addr, connect_timeout)
        .map_err(|e| format!("cannot reach {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: backlog\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP response")?;
    if !raw.starts_with(b"HTTP/1.1 200") {
        let status = String::from_utf8_lossy(&raw[..raw.len().min(split)]);
        let status = status.lines().next().unwrap_or("").to_string();
        return Err(format!(
            "{addr} answered {status:?} to GET {path}: it is not a backlog admin endpoint (the serving port? start the server with --admin ADDR and point at that)"
        ));
    }
    raw.drain(..split + 4);
    Ok(raw)
}
