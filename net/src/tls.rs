//! TLS for quickv connections: every node certificate is signed by the cluster's own CA.
//!
//! Callers verify nodes against the CA ([`ClusterCa`]); nodes also present their own certificate
//! ([`NodeIdentity`]) when they connect to each other, so that node-to-node connections are
//! mutually authenticated. Only TLS 1.3 is offered (QUIC requires it).

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The name every node certificate carries and every caller verifies.
pub const NODE_SERVER_NAME: &str = "quickv-node";

/// ALPN protocol id of quickv over QUIC.
pub const ALPN: &[u8] = b"quickv/1";

/// Why TLS material cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} from {path}: {reason}")]
    Pem {
        /// What was expected (for example "the cluster CA certificate").
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The certificates or key were refused by rustls.
    #[error("invalid TLS material: {0}")]
    Rustls(#[from] rustls::Error),
    /// The TLS configuration cannot carry QUIC.
    #[error("TLS configuration unusable for QUIC: {0}")]
    Quic(String),
}

/// The cluster CA's certificate, which every node certificate must chain to.
#[derive(Clone, Debug)]
pub struct ClusterCa {
    roots: Arc<RootCertStore>,
}

impl ClusterCa {
    /// Reads the CA certificate from a PEM file (`ca.pem` of the cluster folder).
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<ClusterCa, TlsError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| pem_error("the cluster CA certificate", path, e))?;
        ClusterCa::from_pem(&bytes).map_err(|e| pem_error("the cluster CA certificate", path, e))
    }

    /// Parses CA certificates from PEM text.
    pub fn from_pem(pem: &[u8]) -> Result<ClusterCa, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| TlsError::Quic(format!("bad PEM: {e}")))?;
            roots.add(cert)?;
        }
        if roots.is_empty() {
            return Err(TlsError::Quic("no certificate in the CA file".into()));
        }
        Ok(ClusterCa { roots: Arc::new(roots) })
    }

    /// The trust anchors.
    pub fn roots(&self) -> Arc<RootCertStore> {
        self.roots.clone()
    }
}

/// A node's certificate chain and private key.
#[derive(Debug)]
pub struct NodeIdentity {
    /// The node's certificate (first) and any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The node's private key.
    pub key: PrivateKeyDer<'static>,
}

impl NodeIdentity {
    /// Reads a certificate chain and a private key from PEM files.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<NodeIdentity, TlsError> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| pem_error("the node certificate", cert, e))?;
        if chain.is_empty() {
            return Err(pem_error("the node certificate", cert, "the file holds no certificate"));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error("the node key", key, e))?;
        Ok(NodeIdentity { chain, key })
    }

    /// The digest of the node's certificate, which the cluster binds the node's id to.
    pub fn certificate_digest(&self) -> quickv_core::identity::CertificateDigest {
        quickv_core::identity::CertificateDigest::of(self.chain.first().map_or(&[][..], |c| c.as_ref()))
    }
}

impl Clone for NodeIdentity {
    fn clone(&self) -> NodeIdentity {
        NodeIdentity { chain: self.chain.clone(), key: self.key.clone_key() }
    }
}

/// The crypto provider quickv uses (ring), shared by every configuration.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A QUIC client configuration that trusts `ca` and, for nodes, presents `identity`.
pub fn client_config(ca: &ClusterCa, identity: Option<&NodeIdentity>) -> Result<quinn::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(ca.roots());
    let mut tls = match identity {
        Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(crate::transport::transport_config()));
    Ok(config)
}

fn pem_error(what: &'static str, path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Pem { what, path: path.display().to_string(), reason: reason.to_string() }
}
