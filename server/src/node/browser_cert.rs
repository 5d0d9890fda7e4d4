//! The short-lived certificates a node serves WebTransport sessions with (issue 11, 1.2).
//!
//! A browser trusts a server without a public CA by the SHA-256 hash of its certificate
//! (`serverCertificateHashes`), and only for an ECDSA P-256 certificate valid for at most 14 days.
//! So a node makes such certificates itself, publishes their hashes in its entry of the cluster
//! view (see `quickv_core::membership::WebAccess`), and rotates them before they expire:
//!
//! - a certificate is valid for the node's lifetime `L` (10 days by default, at most 13), from an
//!   hour before it was made (a tenth of `L` if that is shorter) for browsers whose clocks lag;
//! - the schedule is core's ([`rotation_plan`]: the node decides, this module makes and keeps
//!   the certificates and serves them):
//! - when the newest certificate is `L/2` old, the node makes the next one and publishes both;
//! - it serves the next one once that has been published for `L/4` (the views browsers loaded
//!   since hold its hash), and keeps publishing the old one until it expires, for the browsers
//!   that loaded their view before;
//! - so at most two certificates are valid at once, and a view a browser loaded stays good for
//!   at least `L/4`.
//!
//! The certificates and their keys are kept in the node folder (`browser.certs`, mode 0600), so a
//! restarted node serves and publishes what it did before (and what browsers hold stays good).
//! Format: a version byte, a CRC-32 of the body, and the postcard encoding of the certificates.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use quickv_core::identity::{CertificateDigest, NodeId};
use quickv_core::membership::{RotationPlan, WebAccess, rotation_plan};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};

use super::driver::Input;

/// The file's name in the node folder.
pub const FILE: &str = "browser.certs";
const VERSION: u8 = 1;

/// The longest lifetime a node gives its browser certificates: browsers take at most 14 days.
pub const MAX_LIFETIME: Duration = Duration::from_secs(13 * 24 * 3600);
/// The lifetime a node gives its browser certificates unless told otherwise.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(10 * 24 * 3600);
/// The shortest lifetime (for tests of the rotation).
pub const MIN_LIFETIME: Duration = Duration::from_secs(8);
/// How far before it is made a certificate is valid from, at most.
const CLOCK_LAG: u64 = 3600;

/// Why the browser certificates could not be loaded, made or saved.
#[derive(Debug, thiserror::Error)]
pub enum BrowserCertError {
    /// The file cannot be read or written.
    #[error("browser certificates {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a set of browser certificates.
    #[error("browser certificates {path}: {reason}; remove the file and the node makes new ones")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A certificate could not be made.
    #[error("cannot make a browser certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The lifetime is outside what browsers take.
    #[error(
        "browser certificate lifetime {0:?} is outside {MIN_LIFETIME:?}..={MAX_LIFETIME:?} (browsers take at most 14 days)"
    )]
    Lifetime(Duration),
}

/// One certificate: when it was made and how long it is valid (Unix seconds), its DER bytes and
/// its key (PKCS#8).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Made {
    made: u64,
    not_before: u64,
    not_after: u64,
    der: Vec<u8>,
    key: Vec<u8>,
}

/// The node's browser certificates, in its folder.
#[derive(Debug)]
pub(crate) struct BrowserCertificates {
    path: PathBuf,
    lifetime: Duration,
    certs: Vec<Made>,
    /// The index (in `certs`) of the certificate served.
    served: usize,
}

impl BrowserCertificates {
    /// Loads the certificates kept in `dir`, then rotates as of `now` (Unix seconds): a node's
    /// first start makes its first certificate.
    pub(crate) fn open(dir: &Path, lifetime: Duration, now: u64) -> Result<BrowserCertificates, BrowserCertError> {
        if !(MIN_LIFETIME..=MAX_LIFETIME).contains(&lifetime) {
            return Err(BrowserCertError::Lifetime(lifetime));
        }
        let path = dir.join(FILE);
        let certs = load(&path)?;
        let mut this = BrowserCertificates { path, lifetime, certs, served: 0 };
        this.rotate(now)?;
        Ok(this)
    }

    /// Rotates as of `now` (Unix seconds): drops what expires, makes the next certificate when
    /// it is time, picks the one to serve, and saves the file if anything changed. Returns
    /// whether the published hashes or the served certificate changed.
    pub(crate) fn rotate(&mut self, now: u64) -> Result<bool, BrowserCertError> {
        let lifetime = self.lifetime.as_secs();
        let times: Vec<(u64, u64)> = self.certs.iter().map(|c| (c.made, c.not_after)).collect();
        let RotationPlan { make, keep, .. } = rotation_plan(&times, now, lifetime);
        let mut certs: Vec<Made> = keep.iter().map(|&i| self.certs[i].clone()).collect();
        if make {
            certs.push(make_certificate(now, lifetime)?);
        }
        let times: Vec<(u64, u64)> = certs.iter().map(|c| (c.made, c.not_after)).collect();
        let served = rotation_plan(&times, now, lifetime).serve.unwrap_or(0);
        let changed = certs != self.certs;
        if changed {
            save(&self.path, &certs)?;
        }
        let moved = changed || served != self.served;
        self.certs = certs;
        self.served = served;
        Ok(moved)
    }

    /// The SHA-256 hashes of the certificates published, oldest first.
    pub(crate) fn hashes(&self) -> Vec<CertificateDigest> {
        self.certs.iter().map(|c| CertificateDigest::of(&c.der)).collect()
    }

    /// The certificate served now, with its key.
    pub(crate) fn served(&self) -> Result<Arc<CertifiedKey>, BrowserCertError> {
        let made = &self.certs[self.served];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.key.clone()));
        let damaged = |reason: String| BrowserCertError::Damaged { path: self.path.clone(), reason };
        let signing = quickv_net::tls::provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| damaged(format!("unusable key: {e}")))?;
        Ok(Arc::new(CertifiedKey::new(vec![CertificateDer::from(made.der.clone())], signing)))
    }

    /// How often the rotation should look again.
    pub(crate) fn check_interval(&self) -> Duration {
        (self.lifetime / 16).clamp(Duration::from_millis(500), Duration::from_secs(3600))
    }
}

/// Makes an ECDSA P-256 certificate valid for `lifetime` seconds, made at `now`.
fn make_certificate(now: u64, lifetime: u64) -> Result<Made, BrowserCertError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(vec!["quickv-node".to_string()])?;
    let not_before = now.saturating_sub(CLOCK_LAG.min(lifetime / 10));
    let not_after = not_before + lifetime;
    let at = |secs: u64| time::OffsetDateTime::from_unix_timestamp(secs as i64).map_err(|_| rcgen::Error::Time);
    params.not_before = at(not_before)?;
    params.not_after = at(not_after)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "quickv browser certificate");
    let cert = params.self_signed(&key)?;
    Ok(Made { made: now, not_before, not_after, der: cert.der().to_vec(), key: key.serialize_der() })
}

fn load(path: &Path) -> Result<Vec<Made>, BrowserCertError> {
    let damaged = |reason: &str| BrowserCertError::Damaged { path: path.to_owned(), reason: reason.into() };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(BrowserCertError::Io { path: path.to_owned(), source }),
    };
    let [version, c0, c1, c2, c3, body @ ..] = bytes.as_slice() else { return Err(damaged("file is truncated")) };
    if *version != VERSION {
        return Err(damaged(&format!("unknown format version {version}")));
    }
    if crc32fast::hash(body).to_le_bytes() != [*c0, *c1, *c2, *c3] {
        return Err(damaged("checksum mismatch: the file is corrupt"));
    }
    let certs: Vec<Made> = postcard::from_bytes(body).map_err(|_| damaged("undecodable"))?;
    if certs.len() > quickv_core::membership::MAX_WEB_CERTIFICATES || certs.windows(2).any(|w| w[0].made > w[1].made) {
        return Err(damaged("not a rotation's certificates"));
    }
    Ok(certs)
}

fn save(path: &Path, certs: &[Made]) -> Result<(), BrowserCertError> {
    let body = postcard::to_allocvec(certs)
        .map_err(|e| BrowserCertError::Damaged { path: path.to_owned(), reason: format!("cannot encode: {e}") })?;
    super::small_file::replace_private(path, VERSION, &body)
        .map_err(|source| BrowserCertError::Io { path: path.to_owned(), source })
}

/// The wall clock in Unix seconds.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Rotates the node's browser certificates for as long as the node runs: serves each new one
/// from `resolver` and has the node machine publish the hashes (its entry in the view, which
/// gossip spreads). The file is saved before anything is published, so a restarted node
/// publishes what it did before. A failure (a full disk) is logged and tried again next time.
pub(crate) async fn rotate(
    mut certs: BrowserCertificates,
    resolver: Arc<CertificateByProtocol>,
    mut web: WebAccess,
    inputs: tokio::sync::mpsc::UnboundedSender<Input>,
    node: NodeId,
) {
    loop {
        tokio::time::sleep(certs.check_interval()).await;
        let rotated = tokio::task::spawn_blocking(move || {
            let result = certs.rotate(unix_now());
            (certs, result)
        })
        .await;
        let Ok((back, result)) = rotated else {
            tracing::error!(%node, "browser certificate rotation stopped: its task failed");
            return;
        };
        certs = back;
        match result.and_then(|changed| Ok((changed, certs.served()?))) {
            Ok((false, _)) => {}
            Ok((true, served)) => {
                resolver.set_browser(served);
                let hashes = certs.hashes();
                match WebAccess::new(web.https(), hashes) {
                    Ok(next) if next != web => {
                        tracing::info!(%node, certificates = next.webtransport().len(), "browser certificates rotated");
                        web = next;
                        if inputs.send(Input::WebAccess(web.clone())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(%node, "browser certificates not published: {e}"),
                }
            }
            Err(e) => tracing::error!(%node, "browser certificate rotation failed (tried again later): {e}"),
        }
    }
}

/// Picks the certificate of a handshake: the browser certificate for WebTransport (ALPN `h3`),
/// the node certificate for everything else.
#[derive(Debug)]
pub(crate) struct CertificateByProtocol {
    node: Arc<CertifiedKey>,
    browser: RwLock<Option<Arc<CertifiedKey>>>,
}

impl CertificateByProtocol {
    pub(crate) fn new(node: Arc<CertifiedKey>) -> CertificateByProtocol {
        CertificateByProtocol { node, browser: RwLock::new(None) }
    }

    /// Serves `browser` to WebTransport handshakes from now on.
    pub(crate) fn set_browser(&self, browser: Arc<CertifiedKey>) {
        *self.browser.write().unwrap_or_else(|p| p.into_inner()) = Some(browser);
    }
}

impl ResolvesServerCert for CertificateByProtocol {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let webtransport = hello.alpn().is_some_and(|mut offered| offered.any(|p| p == WEBTRANSPORT_ALPN));
        if webtransport {
            return self.browser.read().unwrap_or_else(|p| p.into_inner()).clone();
        }
        Some(self.node.clone())
    }
}

/// The ALPN protocol id WebTransport sessions (HTTP/3) are negotiated with.
pub(crate) const WEBTRANSPORT_ALPN: &[u8] = b"h3";

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600;

    /// The files: made on first open, kept (same hashes) on the next, rotated once time passes,
    /// private (mode 0600); a damaged file is a clear error that names it.
    #[test]
    fn browser_certificates_are_kept_in_the_node_folder_and_rotate() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let lifetime = Duration::from_secs(10 * DAY);
        let now = 1_800_000_000;
        let first = BrowserCertificates::open(dir.path(), lifetime, now).unwrap();
        assert_eq!(first.hashes().len(), 1);
        let mode = std::fs::metadata(dir.path().join(FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let served = first.served().unwrap();
        assert_eq!(CertificateDigest::of(&served.cert[0]), first.hashes()[0]);
        let mut again = BrowserCertificates::open(dir.path(), lifetime, now + 3600).unwrap();
        assert_eq!(again.hashes(), first.hashes(), "a restart keeps the certificates");
        assert!(!again.rotate(now + 2 * DAY).unwrap());
        assert!(again.rotate(now + 5 * DAY).unwrap(), "the next one is made at L/2");
        assert_eq!(again.hashes().len(), 2);
        assert_eq!(again.hashes()[0], first.hashes()[0], "the old one is still published");
        assert_eq!(CertificateDigest::of(&again.served().unwrap().cert[0]), first.hashes()[0]);
        assert!(again.rotate(now + 7 * DAY + DAY / 2).unwrap(), "served once published for L/4");
        assert_eq!(CertificateDigest::of(&again.served().unwrap().cert[0]), again.hashes()[1]);
        assert!(again.rotate(now + 9 * DAY).unwrap(), "the old one goes before it expires");
        assert_eq!(again.hashes().len(), 1);
        // What browsers check: ECDSA P-256, at most 14 days valid.
        let der = again.served().unwrap().cert[0].to_vec();
        let p256 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]; // the OID 1.2.840.10045.3.1.7
        assert!(der.windows(8).any(|w| w == p256), "the key is on P-256");
        let made = &again.certs[0];
        assert!(made.not_after - made.not_before <= 14 * DAY);
        std::fs::write(dir.path().join(FILE), b"\x01garbage").unwrap();
        let err = BrowserCertificates::open(dir.path(), lifetime, now).unwrap_err().to_string();
        assert!(err.contains(FILE) && err.contains("remove the file"), "{err}");
        let err = BrowserCertificates::open(dir.path(), Duration::from_secs(15 * DAY), now).unwrap_err();
        assert!(err.to_string().contains("at most 14 days"), "{err}");
    }
}
