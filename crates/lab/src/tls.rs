//! TLS for the lab's TLS scenarios: one certificate for every server of a run, and the
//! clients that trust it.
//!
//! Every server presents the same self-signed ECDSA P-256 certificate, and the clients
//! offer one cipher suite (TLS 1.3, AES-128-GCM) and one key exchange (X25519), so each
//! server does the same cryptography per handshake and per record and the comparison is of
//! the servers, not of their defaults.

use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The certificate files a server is started with.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, mode 600).
    pub key: PathBuf,
}

/// A run's certificate and its clients.
#[derive(Debug, Clone)]
pub struct LabTls {
    /// Where the servers find it.
    pub files: CertFiles,
    pem: String,
}

impl LabTls {
    /// A fresh certificate for `localhost` and 127.0.0.1, written into `dir`.
    pub fn new(dir: &Path) -> anyhow::Result<LabTls> {
        use std::os::unix::fs::PermissionsExt;
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let made = rcgen::generate_simple_self_signed(names)?;
        std::fs::create_dir_all(dir)?;
        let files = CertFiles {
            cert: dir.join("lab-cert.pem"),
            key: dir.join("lab-key.pem"),
        };
        let pem = made.cert.pem();
        std::fs::write(&files.cert, &pem)?;
        std::fs::write(&files.key, made.signing_key.serialize_pem())?;
        std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600))?;
        Ok(LabTls { files, pem })
    }

    /// A client that trusts the certificate; `resume`: it keeps sessions and resumes them
    /// (tickets), else every connection is a full handshake.
    pub fn client(&self, resume: bool) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.pem.as_bytes()).flatten() {
            let _ = roots.add(cert);
        }
        #[allow(deprecated)] // ring: the provider backlog's server uses
        let base = rustls::crypto::ring::default_provider();
        let provider = rustls::crypto::CryptoProvider {
            cipher_suites: vec![rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256],
            kx_groups: vec![rustls::crypto::ring::kx_group::X25519],
            ..base
        };
        let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3 with AES-128-GCM and X25519")
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        if !resume {
            cfg.resumption = Resumption::disabled();
        }
        Arc::new(cfg)
    }
}
