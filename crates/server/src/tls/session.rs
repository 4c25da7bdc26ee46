//! One connection's TLS, with no I/O in it: ciphertext in, plaintext out to the HTTP core,
//! plaintext in from it, ciphertext out — rustls's `ServerConnection` is I/O-free in the
//! same way as [`crate::connection::Connection`], which owns a [`Session`] when its
//! listener speaks TLS.
//!
//! The handshake is timed from the first byte of the ClientHello to the moment rustls says
//! it is done (so a slow client's round trips count, as they do for the request that waits
//! on them), and counted as full or resumed. A connection that sends plain HTTP to the TLS
//! port is answered in plain HTTP with a 400 that says so (nginx's answer), not with a TLS
//! alert the client cannot read.

use bytes::{Buf, BufMut, BytesMut};
use rustls::{ServerConfig, ServerConnection};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// TLS's record type for a handshake message: the first byte of every ClientHello.
const HANDSHAKE_RECORD: u8 = 0x16;

/// The refusal for plain HTTP on a TLS port, sent unencrypted.
const PLAIN_HTTP_REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
content-type: text/plain\r\n\
content-length: 48\r\n\
connection: close\r\n\
\r\n\
The plain HTTP request was sent to HTTPS port.\r\n";

/// How a handshake went, as counted (the labels of the failures in /metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// A full handshake (certificate, key exchange).
    Full,
    /// A resumed session (a ticket or a cached session ID).
    Resumed,
}

/// Why a TLS connection ended before or outside a clean exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// Plain HTTP sent to the TLS port (answered with a plain-text 400).
    PlainHttp,
    /// A ClientHello or handshake message rustls refused: malformed, or nothing in common
    /// (versions, cipher suites, ALPN).
    BadHandshake,
    /// The client refused ours with an alert (an unknown CA, a name mismatch).
    PeerAlert,
    /// The handshake did not finish within the header timeout (a TLS slowloris).
    Timeout,
    /// The client closed or reset the connection mid-handshake.
    Closed,
    /// A record after the handshake could not be decrypted or parsed.
    BadRecord,
}

impl TlsFailure {
    /// Every cause, in the order of [`TlsFailure::index`].
    pub const ALL: [TlsFailure; 6] = [
        TlsFailure::PlainHttp,
        TlsFailure::BadHandshake,
        TlsFailure::PeerAlert,
        TlsFailure::Timeout,
        TlsFailure::Closed,
        TlsFailure::BadRecord,
    ];

    /// Its label in metrics and JSON.
    pub fn name(self) -> &'static str {
        match self {
            TlsFailure::PlainHttp => "plain_http",
            TlsFailure::BadHandshake => "bad_handshake",
            TlsFailure::PeerAlert => "peer_alert",
            TlsFailure::Timeout => "timeout",
            TlsFailure::Closed => "closed",
            TlsFailure::BadRecord => "bad_record",
        }
    }

    /// Its place in [`TlsFailure::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What TLS counted on a connection, added to its thread's counters with the rest of the
/// connection's tally.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TlsTally {
    /// Handshakes completed, with how long each took.
    pub(crate) handshakes: Vec<(Handshake, Duration)>,
    /// Failures, by [`TlsFailure::index`].
    pub(crate) failures: [u32; TlsFailure::ALL.len()],
    /// Handshakes begun (+1) and ended either way (−1): the in-flight gauge's change.
    pub(crate) in_flight: i64,
}

impl TlsTally {
    pub(crate) fn is_empty(&self) -> bool {
        self.handshakes.is_empty()
            && self.in_flight == 0
            && self.failures == [0; TlsFailure::ALL.len()]
    }

    fn fail(&mut self, why: TlsFailure) {
        self.failures[why.index()] += 1;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Handshaking; since when the first ClientHello byte came.
    Handshaking {
        since: Option<Instant>,
    },
    Established,
    /// Failed, or refused plain HTTP: whatever is in `out` is the last thing sent.
    Failed,
}

/// What a batch of received ciphertext gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Opened {
    /// Plaintext bytes appended to the HTTP core's buffer.
    pub(crate) plain: usize,
    /// The client sent close_notify: no more requests will come.
    pub(crate) peer_closed: bool,
    /// The connection failed: send what is queued, then close (`refused`: after a refusal
    /// the client may still be sending, so half-close and linger).
    pub(crate) failed: Option<TlsFailure>,
}

/// One connection's TLS state.
pub(crate) struct Session {
    tls: ServerConnection,
    /// Ciphertext received and not yet taken by rustls; the driver reads into it.
    pub(crate) inbuf: BytesMut,
    /// Ciphertext (or a plain-text refusal) to send.
    out: BytesMut,
    state: State,
    /// close_notify is queued.
    notified: bool,
}

impl Session {
    /// A session that shakes hands with `config`; counts one handshake in flight.
    pub(crate) fn new(config: Arc<ServerConfig>, tally: &mut TlsTally) -> Option<Session> {
        let mut tls = ServerConnection::new(config).ok()?;
        // What is sealed is bounded by the HTTP core's output bound, before it gets here;
        // rustls's own limit (64 KiB) would make a larger answer's write come up short.
        tls.set_buffer_limit(None);
        tally.in_flight += 1;
        Some(Session {
            tls,
            inbuf: BytesMut::new(),
            out: BytesMut::new(),
            state: State::Handshaking { since: None },
            notified: false,
        })
    }

    /// Whether the handshake is done and the session carries requests.
    pub(crate) fn established(&self) -> bool {
        self.state == State::Established
    }

    /// Whether the handshake is still going on.
    pub(crate) fn handshaking(&self) -> bool {
        matches!(self.state, State::Handshaking { .. })
    }

    /// Take in the ciphertext in `inbuf`: the plaintext goes to the end of `plain`.
    pub(crate) fn open(
        &mut self,
        plain: &mut BytesMut,
        now: Instant,
        tally: &mut TlsTally,
    ) -> Opened {
        let mut opened = Opened::default();
        if self.state == State::Failed {
            self.inbuf.clear();
            return opened;
        }
        if let State::Handshaking {
            since: since @ None,
        } = &mut self.state
        {
            if let Some(&first) = self.inbuf.first() {
                *since = Some(now);
                if first != HANDSHAKE_RECORD && first.is_ascii_alphabetic() {
                    // A request line: this client speaks plain HTTP.
                    self.out.extend_from_slice(PLAIN_HTTP_REFUSAL);
                    return self.fail(TlsFailure::PlainHttp, tally);
                }
            }
        }
        let before = plain.len();
        while !self.inbuf.is_empty() {
            let mut rd: &[u8] = &self.inbuf;
            let took = match self.tls.read_tls(&mut rd) {
                Ok(0) => {
                    // close_notify came earlier: nothing after it counts.
                    self.inbuf.clear();
                    break;
                }
                Ok(n) => n,
                Err(_) => return self.fail(self.failure_kind(None), tally),
            };
            self.inbuf.advance(took);
            match self.tls.process_new_packets() {
                Ok(state) => {
                    let n = state.plaintext_bytes_to_read();
                    if n > 0 {
                        plain.reserve(n);
                        let at = plain.len();
                        plain.put_bytes(0, n);
                        let got = self.tls.reader().read(&mut plain[at..]).unwrap_or(0);
                        plain.truncate(at + got);
                    }
                    if state.peer_has_closed() {
                        opened.peer_closed = true;
                    }
                }
                Err(err) => {
                    // rustls queued an alert saying why: it goes out before the close.
                    self.flush();
                    let why = self.failure_kind(Some(&err));
                    let mut failed = self.fail(why, tally);
                    failed.plain = plain.len() - before;
                    return failed;
                }
            }
            if let State::Handshaking { since } = self.state {
                if !self.tls.is_handshaking() {
                    self.state = State::Established;
                    tally.in_flight -= 1;
                    let kind = match self.tls.handshake_kind() {
                        Some(rustls::HandshakeKind::Resumed) => Handshake::Resumed,
                        _ => Handshake::Full,
                    };
                    let took = since.map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
                    tally.handshakes.push((kind, took));
                }
            }
        }
        opened.plain = plain.len() - before;
        opened
    }

    fn failure_kind(&self, err: Option<&rustls::Error>) -> TlsFailure {
        match (self.state, err) {
            (_, Some(rustls::Error::AlertReceived(_))) => TlsFailure::PeerAlert,
            (State::Established, _) => TlsFailure::BadRecord,
            _ => TlsFailure::BadHandshake,
        }
    }

    fn fail(&mut self, why: TlsFailure, tally: &mut TlsTally) -> Opened {
        if self.handshaking() {
            tally.in_flight -= 1;
        }
        self.state = State::Failed;
        self.inbuf.clear();
        tally.fail(why);
        Opened {
            failed: Some(why),
            ..Opened::default()
        }
    }

    /// The connection is being closed or cut by a deadline: a handshake still going on
    /// ends here, counted as `why`.
    pub(crate) fn abandon(&mut self, why: TlsFailure, tally: &mut TlsTally) {
        if self.handshaking() {
            self.fail(why, tally);
        }
    }

    /// Encrypt `plain` (an answer) for sending.
    pub(crate) fn seal(&mut self, plain: &[u8]) {
        if self.state == State::Established {
            // Its buffer is unbounded (see `new`): the write takes it all.
            let _ = self.tls.writer().write_all(plain);
        }
    }

    /// No more answers will come: tell the client (close_notify), once.
    pub(crate) fn close_notify(&mut self) {
        if self.state == State::Established && !self.notified {
            self.notified = true;
            self.tls.send_close_notify();
        }
    }

    /// Move what rustls has to send (handshake messages, sealed records, alerts) to `out`.
    fn flush(&mut self) {
        while self.tls.wants_write() {
            let mut w = (&mut self.out).writer();
            match self.tls.write_tls(&mut w) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Ciphertext to send now, if any.
    pub(crate) fn poll_out(&mut self) -> Option<BytesMut> {
        self.flush();
        (!self.out.is_empty()).then(|| std::mem::take(&mut self.out))
    }

    /// What a send did not take goes back in front of what was queued since.
    pub(crate) fn unsent(&mut self, mut rest: BytesMut) {
        rest.unsplit(std::mem::take(&mut self.out));
        self.out = rest;
    }

    /// Ciphertext waiting to be sent: the bytes in `out`, plus one while rustls still holds
    /// records not yet moved there (their size is unknown until then; that something waits
    /// is what the core needs, for its deadlines and its close).
    pub(crate) fn pending_out(&self) -> usize {
        self.out.len() + self.tls.wants_write() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::keys::tests::self_signed;
    use crate::tls::Tls;
    use rustls::pki_types::ServerName;
    use rustls::ClientConnection;

    fn server() -> (Session, TlsTally, Arc<rustls::ClientConfig>) {
        let (cert, key) = self_signed();
        let tls = Tls::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        let mut tally = TlsTally::default();
        let session = Session::new(tls.config(), &mut tally).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap())
            .unwrap();
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (session, tally, Arc::new(client))
    }

    use rustls::pki_types::pem::PemObject;

    /// Move what each side has to send to the other, one byte at a time into the server
    /// (a request's fate must not depend on how TCP split it), until neither has more.
    fn pump(
        client: &mut ClientConnection,
        s: &mut Session,
        plain: &mut BytesMut,
        tally: &mut TlsTally,
        now: Instant,
    ) {
        loop {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            for b in &wire {
                s.inbuf.extend_from_slice(&[*b]);
                let opened = s.open(plain, now, tally);
                assert_eq!(opened.failed, None);
            }
            let back = s.poll_out();
            if wire.is_empty() && back.is_none() {
                return;
            }
            if let Some(back) = back {
                let mut rd = &back[..];
                while !rd.is_empty() {
                    client.read_tls(&mut rd).unwrap();
                    client.process_new_packets().unwrap();
                }
            }
        }
    }

    #[test]
    fn a_handshake_fed_a_byte_at_a_time_completes_and_carries_a_request_both_ways() {
        let (mut s, mut tally, cfg) = server();
        assert_eq!(tally.in_flight, 1);
        let name = ServerName::try_from("localhost").unwrap();
        let mut client = ClientConnection::new(cfg, name).unwrap();
        client
            .writer()
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .unwrap();
        let mut plain = BytesMut::new();
        let t0 = Instant::now();
        pump(&mut client, &mut s, &mut plain, &mut tally, t0);
        assert!(!s.handshaking());
        assert_eq!(&plain[..], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(tally.in_flight, 0);
        assert_eq!(tally.handshakes.len(), 1);
        assert_eq!(tally.handshakes[0].0, Handshake::Full);
        s.seal(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        let out = s.poll_out().unwrap();
        let mut rd = &out[..];
        client.read_tls(&mut rd).unwrap();
        client.process_new_packets().unwrap();
        let mut got = vec![0; 64];
        let n = client.reader().read(&mut got).unwrap();
        assert!(got[..n].starts_with(b"HTTP/1.1 200 OK"));
    }

    #[test]
    fn plain_http_gets_a_plain_400_and_garbage_gets_an_alert() {
        let (mut s, mut tally, _) = server();
        s.inbuf.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let opened = s.open(&mut BytesMut::new(), Instant::now(), &mut tally);
        assert_eq!(opened.failed, Some(TlsFailure::PlainHttp));
        let out = s.poll_out().unwrap();
        assert!(out.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
        assert_eq!(
            out.len(),
            out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4 + 48
        );
        assert_eq!(tally.in_flight, 0);
        assert_eq!(tally.failures[TlsFailure::PlainHttp.index()], 1);

        let (mut s, mut tally, _) = server();
        s.inbuf
            .extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00]);
        let opened = s.open(&mut BytesMut::new(), Instant::now(), &mut tally);
        assert_eq!(opened.failed, Some(TlsFailure::BadHandshake));
        let out = s.poll_out().expect("an alert");
        assert_eq!(out[0], 0x15, "an alert record");
        assert_eq!(tally.in_flight, 0);
    }
}
