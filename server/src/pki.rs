//! The cluster's own certificate authority and node certificates.
//!
//! `quickv-node init --dir DIR` writes `DIR/ca.pem` (the CA certificate, handed to clients) and
//! `DIR/ca.key` (its private key, mode 0600, needed only to issue node certificates), and
//! `DIR/cluster.secret` (mode 0600, nodes only: the key nodes seal causal contexts with, see
//! [`ContextKey`]; a node copies it into its own folder on its first start). A node
//! started with `--ca-dir DIR` and no certificate of its own gets one issued into its folder
//! (`node.pem`, `node.key`): a certificate for the name `quickv-node`, valid for server and
//! client authentication, so one certificate serves the node's listener and its connections to
//! peers.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use quickv_core::version::ContextKey;
use quickv_net::tls::{self, ALPN, ClusterCa, NODE_SERVER_NAME, NodeIdentity, TlsError};

use crate::node::browser_cert::{CertificateByProtocol, WEBTRANSPORT_ALPN};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The CA certificate's file name in the cluster folder.
pub const CA_CERT: &str = "ca.pem";
/// The CA key's file name in the cluster folder.
pub const CA_KEY: &str = "ca.key";
/// The cluster secret's file name, in the cluster folder and in each node's folder.
pub const CLUSTER_SECRET: &str = "cluster.secret";
/// The first line of a cluster secret file: its format.
const SECRET_FORMAT: &str = "quickv cluster secret v1";
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
    /// The cluster folder has no cluster secret.
    #[error(
        "no cluster secret at {0}: run `quickv-node init --dir` on the cluster folder (it adds one to a cluster \
         made by an earlier version) before starting nodes"
    )]
    NoSecret(PathBuf),
    /// A cluster secret file is damaged.
    #[error("{0} is not a quickv cluster secret (a line `{SECRET_FORMAT}`, then 64 hex digits)")]
    BadSecret(PathBuf),
    /// The operating system's random source failed.
    #[error("the system's random source failed")]
    Random,
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

/// Creates the cluster CA and the cluster secret in `dir`, each unless it exists. Returns
/// whether anything was created.
pub fn init_cluster(dir: &Path) -> Result<bool, PkiError> {
    let (cert_path, key_path, secret_path) = (dir.join(CA_CERT), dir.join(CA_KEY), dir.join(CLUSTER_SECRET));
    let mut created = false;
    fs::create_dir_all(dir).map_err(io("creating", dir))?;
    if !(cert_path.exists() && key_path.exists()) {
        let key = KeyPair::generate()?;
        let cert = ca_params().self_signed(&key)?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        fs::write(&cert_path, cert.pem()).map_err(io("writing", &cert_path))?;
        created = true;
    }
    if !secret_path.exists() {
        let mut bytes = [0u8; ContextKey::LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).map_err(|_| PkiError::Random)?;
        write_private(&secret_path, secret_text(&bytes).as_bytes())?;
        created = true;
    }
    Ok(created)
}

/// The cluster secret this node seals contexts with: its own copy, or (first start) the cluster
/// folder's, copied into the node's folder so that the node no longer needs the cluster folder.
pub fn cluster_secret(node_dir: &Path, ca_dir: &Path) -> Result<ContextKey, PkiError> {
    let own = node_dir.join(CLUSTER_SECRET);
    if own.exists() {
        return read_secret(&own);
    }
    let shared = ca_dir.join(CLUSTER_SECRET);
    if !shared.exists() {
        return Err(PkiError::NoSecret(shared));
    }
    let text = fs::read_to_string(&shared).map_err(io("reading", &shared))?;
    let key = parse_secret(&text).ok_or_else(|| PkiError::BadSecret(shared.clone()))?;
    fs::create_dir_all(node_dir).map_err(io("creating", node_dir))?;
    write_private(&own, text.as_bytes())?;
    Ok(key)
}

fn read_secret(path: &Path) -> Result<ContextKey, PkiError> {
    let text = fs::read_to_string(path).map_err(io("reading", path))?;
    parse_secret(&text).ok_or_else(|| PkiError::BadSecret(path.to_owned()))
}

fn secret_text(bytes: &[u8; ContextKey::LEN]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{SECRET_FORMAT}\n{hex}\n")
}

fn parse_secret(text: &str) -> Option<ContextKey> {
    let mut lines = text.lines();
    let (format, hex) = (lines.next()?, lines.next()?.trim());
    if format != SECRET_FORMAT || lines.any(|l| !l.trim().is_empty()) || hex.len() != 2 * ContextKey::LEN {
        return None;
    }
    let mut bytes = [0u8; ContextKey::LEN];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(ContextKey::new(bytes))
}

/// The node's identity from its folder, issuing a certificate signed by the CA in `ca_dir` first
/// if the folder has none: for the name `quickv-node` (what QUIC peers and clients check) and
/// the IP `addresses` the node is reached at (so that an HTTPS caller dialling
/// `https://127.0.0.1:8101` with the cluster CA, such as `fetch` in Node.js, finds the name it
/// dialled; unspecified addresses are left out). A certificate issued before is kept as it is.
pub fn node_identity(node_dir: &Path, ca_dir: &Path, addresses: &[std::net::IpAddr]) -> Result<NodeIdentity, PkiError> {
    let (cert_path, key_path) = (node_dir.join(NODE_CERT), node_dir.join(NODE_KEY));
    if !(cert_path.exists() && key_path.exists()) {
        let ca_key_path = ca_dir.join(CA_KEY);
        if !ca_key_path.exists() {
            return Err(PkiError::NoCa(ca_key_path));
        }
        let ca_key_pem = fs::read_to_string(&ca_key_path).map_err(io("reading", &ca_key_path))?;
        let issuer = Issuer::new(ca_params(), KeyPair::from_pem(&ca_key_pem)?);
        let mut names = vec![NODE_SERVER_NAME.to_owned()];
        for ip in addresses.iter().filter(|ip| !ip.is_unspecified()) {
            if !names.contains(&ip.to_string()) {
                names.push(ip.to_string());
            }
        }
        let mut params = CertificateParams::new(names)?;
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
///
/// With `browser`, the endpoint also negotiates WebTransport (ALPN `h3`), whose handshakes get
/// the browser certificate `browser` holds (see [`crate::node::browser_cert`]).
pub(crate) fn server_config(
    ca: &ClusterCa,
    identity: &NodeIdentity,
    transport: quinn::TransportConfig,
    browser: Option<Arc<CertificateByProtocol>>,
) -> Result<quinn::ServerConfig, TlsError> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(ca.roots(), tls::provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let builder = rustls::ServerConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier);
    let config = match browser {
        Some(resolver) => {
            let mut config = builder.with_cert_resolver(resolver);
            config.alpn_protocols = vec![ALPN.to_vec(), WEBTRANSPORT_ALPN.to_vec()];
            config
        }
        None => {
            let mut config = builder.with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
            config.alpn_protocols = vec![ALPN.to_vec()];
            config
        }
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// 3.3: the cluster secret is made once by `init` (also for a folder from before secrets), a
    /// node copies it on its first start and keeps using its copy; a missing or damaged secret
    /// stops the node with an error naming the file.
    #[test]
    fn the_cluster_secret_is_made_by_init_and_copied_by_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let (cluster, node) = (dir.path().join("cluster"), dir.path().join("cluster/n1"));
        assert!(matches!(cluster_secret(&node, &cluster), Err(PkiError::NoSecret(_))));
        assert!(init_cluster(&cluster).unwrap());
        assert!(!init_cluster(&cluster).unwrap(), "nothing left to create");
        let secret = cluster_secret(&node, &cluster).unwrap();
        assert!(node.join(CLUSTER_SECRET).exists());
        assert_eq!(cluster_secret(&node, Path::new("/nonexistent")).unwrap(), secret, "the node's own copy");
        // A cluster folder made before secrets: init adds one and keeps the CA.
        fs::remove_file(cluster.join(CLUSTER_SECRET)).unwrap();
        let ca = fs::read(cluster.join(CA_CERT)).unwrap();
        assert!(init_cluster(&cluster).unwrap());
        assert_eq!(fs::read(cluster.join(CA_CERT)).unwrap(), ca);
        assert_ne!(cluster_secret(&dir.path().join("n2"), &cluster).unwrap(), secret, "a new secret");
        // A damaged copy.
        fs::write(node.join(CLUSTER_SECRET), "quickv cluster secret v1\nzz\n").unwrap();
        let err = cluster_secret(&node, &cluster).unwrap_err();
        assert!(matches!(err, PkiError::BadSecret(_)), "{err}");
        assert!(err.to_string().contains(CLUSTER_SECRET), "{err}");
    }

    #[test]
    fn a_secret_reads_back_as_written() {
        let bytes: [u8; ContextKey::LEN] = core::array::from_fn(|i| i as u8 * 7);
        assert_eq!(parse_secret(&secret_text(&bytes)), Some(ContextKey::new(bytes)));
        for bad in ["", "quickv cluster secret v1\n", "quickv cluster secret v2\n00\n", "x\ny\n"] {
            assert_eq!(parse_secret(bad), None, "{bad:?}");
        }
    }
}
