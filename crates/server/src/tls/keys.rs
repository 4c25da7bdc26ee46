//! The server's certificate chain and key: read from PEM, made into a rustls
//! `ServerConfig`, and swapped in place by a reload.
//!
//! Connections take the configuration current when they are accepted and keep it: a reload
//! (SIGHUP, `backlog reload`, [`Tls::reload`]) changes what the next handshake presents and
//! drops no connection. The session-ticket key and the session cache outlive reloads, so a
//! client that resumes after a certificate change still resumes. Nothing here ever logs or
//! prints key material (`Debug` shows the paths only).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

/// Sessions the server remembers for stateful resumption (TLS 1.2 session IDs, and TLS 1.3
/// clients that do not take tickets), per process.
const SESSION_CACHE: usize = 4096;

/// Why certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file holds no certificate, or one that is not valid PEM.
    #[error("no PEM certificate in {0}")]
    NoCertificate(String),
    /// The key file holds no private key (PKCS#8, PKCS#1 or SEC1 PEM).
    #[error("no PEM private key in {0}")]
    NoKey(String),
    /// rustls refused the pair (a key that does not match the certificate, an unsupported
    /// key type).
    #[error("certificate and key not usable: {0}")]
    Rejected(#[from] rustls::Error),
    /// Certificates given in memory cannot be read again.
    #[error("these certificates were given in memory, not as files: nothing to reload")]
    NotFromFiles,
}

/// Where the certificates come from.
#[derive(Clone)]
enum Source {
    Files { cert: PathBuf, key: PathBuf },
    Memory,
}

/// TLS for a server: the configuration every new connection's handshake uses, replaced
/// whole by a reload. Shared by every reader (and acceptor) thread.
pub struct Tls {
    source: Source,
    ticketer: Arc<dyn ProducesTickets>,
    sessions: Arc<dyn StoresServerSessions>,
    current: RwLock<Arc<ServerConfig>>,
    reloads: AtomicU64,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Tls");
        if let Source::Files { cert, key } = &self.source {
            d.field("cert", cert).field("key", key);
        }
        d.field("reloads", &self.reloads.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Load a certificate chain (leaf first) and its private key from PEM files. A key file
    /// that others may read is served, with a warning.
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Arc<Tls>, TlsError> {
        let source = Source::Files {
            cert: cert.as_ref().to_path_buf(),
            key: key.as_ref().to_path_buf(),
        };
        let (chain, key) = read_files(&source)?;
        Tls::build(source, chain, key)
    }

    /// A certificate chain and key given as PEM text (tests, embedded servers). Such a
    /// server cannot [`reload`](Tls::reload) from files; [`Tls::replace_pem`] swaps them.
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<Arc<Tls>, TlsError> {
        let (chain, key) = parse(cert, key, "the certificate given", "the key given")?;
        Tls::build(Source::Memory, chain, key)
    }

    fn build(
        source: Source,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Arc<Tls>, TlsError> {
        let ticketer = rustls::crypto::ring::Ticketer::new()?;
        let sessions: Arc<dyn StoresServerSessions> = ServerSessionMemoryCache::new(SESSION_CACHE);
        let config = server_config(chain, key, &ticketer, &sessions)?;
        Ok(Arc::new(Tls {
            source,
            ticketer,
            sessions,
            current: RwLock::new(config),
            reloads: AtomicU64::new(0),
        }))
    }

    /// Read the certificate and key files again and serve the new ones from the next
    /// handshake on. On an error the old ones stay in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        if matches!(self.source, Source::Memory) {
            return Err(TlsError::NotFromFiles);
        }
        let (chain, key) = read_files(&self.source)?;
        self.install(chain, key)
    }

    /// Serve this certificate chain and key from the next handshake on.
    pub fn replace_pem(&self, cert: &[u8], key: &[u8]) -> Result<(), TlsError> {
        let (chain, key) = parse(cert, key, "the certificate given", "the key given")?;
        self.install(chain, key)
    }

    fn install(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<(), TlsError> {
        let config = server_config(chain, key, &self.ticketer, &self.sessions)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        self.reloads.fetch_add(1, Relaxed);
        Ok(())
    }

    /// How many times the certificates were replaced.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Relaxed)
    }

    /// The configuration a connection accepted now shakes hands with.
    pub(crate) fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ticketer: &Arc<dyn ProducesTickets>,
    sessions: &Arc<dyn StoresServerSessions>,
) -> Result<Arc<ServerConfig>, TlsError> {
    // ring, not aws-lc-rs: it builds with no C toolchain beyond cc and in a fraction of
    // the time. It has no post-quantum key exchange (rustls marks it deprecated for that);
    // the clients this serves still negotiate X25519.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ticketer = ticketer.clone();
    config.session_storage = sessions.clone();
    Ok(Arc::new(config))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_files(
    source: &Source,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let Source::Files { cert, key } = source else {
        return Err(TlsError::NotFromFiles);
    };
    warn_if_exposed(key);
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    parse(
        &cert_pem,
        &key_pem,
        &cert.display().to_string(),
        &key.display().to_string(),
    )
}

fn parse(
    cert: &[u8],
    key: &[u8],
    cert_name: &str,
    key_name: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoCertificate(cert_name.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert_name.to_string()));
    }
    // The parser's error would quote what it could not read: say only where.
    let key =
        PrivateKeyDer::from_pem_slice(key).map_err(|_| TlsError::NoKey(key_name.to_string()))?;
    Ok((chain, key))
}

/// A private key others can read is everyone's key: say so (nginx and sshd refuse or warn
/// the same way); serving goes on, as the operator may have reasons.
fn warn_if_exposed(key: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(key) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %key.display(),
                mode = format_args!("{mode:o}"),
                "the TLS private key is readable by other users; chmod 600 it"
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A self-signed certificate for `localhost` and 127.0.0.1, with its key, as PEM.
    pub(crate) fn self_signed() -> (String, String) {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let cert = rcgen::generate_simple_self_signed(names).expect("rcgen");
        (cert.cert.pem(), cert.signing_key.serialize_pem())
    }

    #[test]
    fn a_pair_loads_and_a_mismatched_or_missing_key_is_refused() {
        let (cert, key) = self_signed();
        let tls = Tls::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(
            tls.config().alpn_protocols,
            vec![b"http/1.1".to_vec()],
            "ALPN says http/1.1"
        );
        let (_, other_key) = self_signed();
        assert!(matches!(
            tls.replace_pem(cert.as_bytes(), other_key.as_bytes()),
            Err(TlsError::Rejected(_))
        ));
        assert!(matches!(
            Tls::from_pem(cert.as_bytes(), b"not a key"),
            Err(TlsError::NoKey(_))
        ));
        assert!(matches!(
            Tls::from_pem(b"", key.as_bytes()),
            Err(TlsError::NoCertificate(_))
        ));
        assert!(matches!(tls.reload(), Err(TlsError::NotFromFiles)));
        assert_eq!(tls.reloads(), 0, "a refused pair replaced nothing");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let (cert, key) = self_signed();
        let tls = Tls::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        let shown = format!("{tls:?}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
    }
}
