//! The cluster's own certificate authority and node certificates.
//!
//! `quickv-node init --dir DIR` writes `DIR/ca.pem` (the CA certificate, handed to clients) and
//! `DIR/ca.key` (its private key, mode 0600, needed only to issue node certificates). A node
//! started with `--ca-dir DIR` and no certificate of its own gets one issued into its folder
//! (`node.pem`, `node.key`): a certificate for the name `quickv-node`, valid for server and
//! client authentication, so one certificate serves the node's listener and its connections to
//! peers.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use quickv_client::tls::{self, ALPN, ClusterCa, NODE_SERVER_NAME, NodeIdentity, TlsError};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The CA certificate's file name in the cluster folder.
pub const CA_CERT: &str = "ca.pem";
/// The CA key's file name in the cluster folder.
pub const CA_KEY: &str = "ca.key";
/// A node's certificate file name in its folder.
pub const NODE_CERT: &str = "node.pem";
/// A node's key file name in its folder.
pub const NODE_KEY: &str = "node.key";

/// Why certificates could not be made or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Generating or signing failed, or a key file is not a usable key.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// The CA key is missing: the node cannot get a certificate.
    #[error("no CA key at {0}: run `quickv-node init --dir` on the cluster folder first")]
    NoCa(PathBuf),
    /// The certificates are unusable for TLS.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PkiError + 'a {
    move |source| PkiError::Io { action, path: path.to_owned(), source }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "quickv cluster CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

/// Creates the cluster CA in `dir` unless it exists. Returns whether it was created.
pub fn init_cluster(dir: &Path) -> Result<bool, PkiError> {
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    if cert_path.exists() && key_path.exists() {
        return Ok(false);
    }
    fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let key = KeyPair::generate()?;
    let cert = ca_params().self_signed(&key)?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    fs::write(&cert_path, cert.pem()).map_err(io("writing", &cert_path))?;
    Ok(true)
}

/// The node's identity from its folder, issuing a certificate signed by the CA in `ca_dir` first
/// if the folder has none.
pub fn node_identity(node_dir: &Path, ca_dir: &Path) -> Result<NodeIdentity, PkiError> {
    let (cert_path, key_path) = (node_dir.join(NODE_CERT), node_dir.join(NODE_KEY));
    if !(cert_path.exists() && key_path.exists()) {
        let ca_key_path = ca_dir.join(CA_KEY);
        if !ca_key_path.exists() {
            return Err(PkiError::NoCa(ca_key_path));
        }
        let ca_key_pem = fs::read_to_string(&ca_key_path).map_err(io("reading", &ca_key_path))?;
        let issuer = Issuer::new(ca_params(), KeyPair::from_pem(&ca_key_pem)?);
        let mut params = CertificateParams::new(vec![NODE_SERVER_NAME.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, NODE_SERVER_NAME);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        fs::create_dir_all(node_dir).map_err(io("creating", node_dir))?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        fs::write(&cert_path, cert.pem()).map_err(io("writing", &cert_path))?;
    }
    Ok(NodeIdentity::from_pem_files(&cert_path, &key_path)?)
}

/// The QUIC server configuration of a node: presents `identity`, accepts callers without a
/// certificate, refuses peers whose certificate does not chain to `ca`, and uses `transport`.
pub fn server_config(
    ca: &ClusterCa,
    identity: &NodeIdentity,
    transport: quinn::TransportConfig,
) -> Result<quinn::ServerConfig, TlsError> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(ca.roots(), tls::provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(config).map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    server.transport_config(Arc::new(transport));
    Ok(server)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io("writing", path))?;
    file.write_all(bytes).map_err(io("writing", path))
}
