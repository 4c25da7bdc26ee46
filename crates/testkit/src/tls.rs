//! A TLS test client: a self-signed certificate made for the test, and rustls client
//! connections that trust it, so TLS tests speak the same HTTP as the plain ones.

use crate::http::connect;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

/// A certificate for `localhost` and 127.0.0.1 with its key, as PEM and as files (mode
/// 600) in a scratch directory that goes with it.
pub struct TestCert {
    /// Where the files are; removed when this is dropped.
    pub dir: tempfile::TempDir,
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// The private key, PEM.
    pub key: PathBuf,
    /// The certificate's PEM text.
    pub cert_pem: String,
    /// The key's PEM text.
    pub key_pem: String,
}

impl TestCert {
    /// A fresh self-signed certificate (ECDSA P-256).
    pub fn new() -> TestCert {
        let dir = crate::scratch("backlog-tls-");
        TestCert::write_into(dir)
    }

    fn write_into(dir: tempfile::TempDir) -> TestCert {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let made = rcgen::generate_simple_self_signed(names).expect("rcgen");
        let (cert_pem, key_pem) = (made.cert.pem(), made.signing_key.serialize_pem());
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, &cert_pem).expect("writing the certificate");
        std::fs::write(&key, &key_pem).expect("writing the key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        TestCert {
            dir,
            cert,
            key,
            cert_pem,
            key_pem,
        }
    }

    /// Replace the files with a new certificate and key (a reload's input); the old PEM
    /// stays trusted by clients made before.
    pub fn renew(self) -> TestCert {
        TestCert::write_into(self.dir)
    }

    /// A client configuration that trusts this certificate (and offers ALPN http/1.1).
    pub fn client(&self) -> Arc<ClientConfig> {
        client_trusting(&[&self.cert_pem])
    }
}

impl Default for TestCert {
    fn default() -> Self {
        TestCert::new()
    }
}

/// A client configuration that trusts these certificates, offering ALPN `http/1.1`.
pub fn client_trusting(certs: &[&str]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for pem in certs {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.expect("a PEM certificate")).expect("a root");
        }
    }
    #[allow(deprecated)] // ring: the same provider as the server's
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// A TLS connection to a test server.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Connect to `addr` and finish the handshake (as `localhost`).
pub fn connect_tls(addr: SocketAddr, cfg: &Arc<ClientConfig>) -> TlsStream {
    let name = ServerName::try_from("localhost").expect("a name");
    let conn = ClientConnection::new(cfg.clone(), name).expect("a client connection");
    let mut s = StreamOwned::new(conn, connect(addr));
    while s.conn.is_handshaking() {
        s.conn
            .complete_io(&mut s.sock)
            .expect("the TLS handshake completes");
    }
    s
}

/// Connect to `addr` with `raw` queued before the handshake: rustls sends it as soon as the
/// keys allow, in the same flight as the client's Finished (TLS 1.3), as browsers with
/// early-sending stacks do.
pub fn connect_tls_sending(addr: SocketAddr, cfg: &Arc<ClientConfig>, raw: &[u8]) -> TlsStream {
    let name = ServerName::try_from("localhost").expect("a name");
    let mut conn = ClientConnection::new(cfg.clone(), name).expect("a client connection");
    conn.writer().write_all(raw).expect("queued");
    let mut s = StreamOwned::new(conn, connect(addr));
    while s.conn.is_handshaking() || s.conn.wants_write() {
        s.conn
            .complete_io(&mut s.sock)
            .expect("the TLS handshake completes");
    }
    s
}

/// Send `raw` on a fresh TLS connection and read one response.
pub fn tls_roundtrip(
    addr: SocketAddr,
    cfg: &Arc<ClientConfig>,
    raw: &[u8],
) -> crate::http::HttpResponse {
    let mut s = connect_tls(addr, cfg);
    s.write_all(raw).expect("sending");
    s.flush().expect("sending");
    let mut r = std::io::BufReader::new(s);
    crate::http::read_response(&mut r, false).expect("a response")
}

/// A TLS-terminating relay for tests written against plain TCP: each connection made to
/// [`Terminator::addr`] is relayed, byte for byte as it comes, over a TLS connection of its
/// own to the server — so a test that splits a request at every byte sends one-byte TLS
/// records, and a suite of raw-TCP cases runs unchanged over TLS. Half-closes and resets
/// are passed on both ways. It stops (and joins its threads) when dropped.
pub struct Terminator {
    /// Where the plain side listens.
    pub addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Terminator {
    /// Relay to the TLS server at `server`, trusting what `cfg` trusts.
    pub fn start(server: SocketAddr, cfg: Arc<ClientConfig>) -> Terminator {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a relay port");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("its address");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let accept = std::thread::spawn(move || {
            let mut relays = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((plain, _)) => {
                        let (cfg, flag) = (cfg.clone(), flag.clone());
                        relays.push(std::thread::spawn(move || relay(plain, server, cfg, &flag)));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(2)),
                }
            }
            for r in relays {
                let _ = r.join();
            }
        });
        Terminator {
            addr,
            stop,
            accept: Some(accept),
        }
    }
}

impl Drop for Terminator {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

/// Relay one plain connection over TLS until both sides are done (or the relay stops).
fn relay(
    mut plain: TcpStream,
    server: SocketAddr,
    cfg: Arc<ClientConfig>,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::io::{ErrorKind, Read};
    use std::net::Shutdown;
    let name = ServerName::try_from("localhost").expect("a name");
    let Ok(mut tls) = ClientConnection::new(cfg, name) else {
        return;
    };
    let Ok(mut sock) = TcpStream::connect(server) else {
        return;
    };
    let _ = plain.set_nonblocking(true);
    let _ = sock.set_nonblocking(true);
    let _ = sock.set_nodelay(true);
    let (mut plain_done, mut tls_done) = (false, false);
    let mut buf = [0u8; 16 * 1024];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let stopping = stop.load(std::sync::atomic::Ordering::Relaxed);
        if (plain_done && tls_done) || stopping || std::time::Instant::now() >= deadline {
            break;
        }
        let mut moved = false;
        // Plain client → TLS: every read becomes its own record(s), split as it came.
        if !plain_done {
            match plain.read(&mut buf) {
                Ok(0) => {
                    plain_done = true;
                    tls.send_close_notify();
                    moved = true;
                }
                Ok(n) => {
                    let _ = tls.writer().write_all(&buf[..n]);
                    moved = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {
                    // The client reset: reset the server side too.
                    let _ =
                        socket2::SockRef::from(&sock).set_linger(Some(std::time::Duration::ZERO));
                    return;
                }
            }
        }
        while tls.wants_write() {
            match tls.write_tls(&mut sock) {
                Ok(_) => moved = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return,
            }
        }
        if plain_done && !tls.wants_write() {
            let _ = sock.shutdown(Shutdown::Write);
        }
        // TLS server → plain client.
        if !tls_done {
            match tls.read_tls(&mut sock) {
                Ok(0) => tls_done = true,
                Ok(_) => {
                    moved = true;
                    if tls.process_new_packets().is_err() {
                        tls_done = true;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {
                    // The server reset: so does the relay, toward the client.
                    let _ =
                        socket2::SockRef::from(&plain).set_linger(Some(std::time::Duration::ZERO));
                    return;
                }
            }
            loop {
                match tls.reader().read(&mut buf) {
                    Ok(0) => {
                        tls_done = true;
                        break;
                    }
                    Ok(n) => {
                        let _ = plain.set_nonblocking(false);
                        let _ = plain.write_all(&buf[..n]);
                        let _ = plain.set_nonblocking(true);
                        moved = true;
                    }
                    Err(_) => break,
                }
            }
            if tls_done {
                let _ = plain.shutdown(Shutdown::Write);
            }
        }
        if !moved {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}
