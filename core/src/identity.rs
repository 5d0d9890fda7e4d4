//! Node identity: the names of nodes and zones.

use alloc::string::String;
use alloc::sync::Arc;
use core::fmt;

use serde::{Deserialize, Serialize};

/// Longest node id, zone name or address accepted, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Longest id a node may be given: its writes are named `id#incarnation` (up to 20 digits),
/// which must still be a valid name.
pub const MAX_NODE_ID_LEN: usize = MAX_NAME_LEN - 21;

/// Separates a node's id from its incarnation in the actor that names its writes; node ids may
/// not contain it.
pub const INCARNATION_SEPARATOR: char = '#';

/// The stable name of a node (`--id`), unique in a cluster. Cheap to clone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct NodeId(Arc<str>);

impl TryFrom<String> for NodeId {
    type Error = NameError;
    fn try_from(s: String) -> Result<NodeId, NameError> {
        NodeId::new(&s)
    }
}

impl NodeId {
    /// A node id from its name. Names are non-empty printable ASCII without spaces.
    pub fn new(name: &str) -> Result<NodeId, NameError> {
        check_name(name)?;
        Ok(NodeId(Arc::from(name)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The actor that names the writes this node mints in its `incarnation`: `id#incarnation`.
    /// A node that may have lost state starts a new incarnation, so it never mints a dot it may
    /// have minted before. Fails for an id a node may not have (see [`MAX_NODE_ID_LEN`]).
    pub fn in_incarnation(&self, incarnation: u64) -> Result<NodeId, NameError> {
        if self.0.contains(INCARNATION_SEPARATOR) {
            return Err(NameError::BadCharacter { name: self.0.as_ref().into() });
        }
        NodeId::new(&alloc::format!("{}{INCARNATION_SEPARATOR}{incarnation}", self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SHA-256 digest of a node's certificate (its DER encoding): what a node id is bound to.
///
/// A node's entry in the cluster view names the certificate the node presents; a node with
/// another certificate cannot take the id over (issue 7, 3.2). The digest is public: knowing it
/// does not let anyone present the certificate, which needs its private key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CertificateDigest([u8; 32]);

impl CertificateDigest {
    /// The digest of a certificate's DER bytes.
    pub fn of(der: &[u8]) -> CertificateDigest {
        use sha2::Digest;
        CertificateDigest(sha2::Sha256::digest(der).into())
    }

    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for CertificateDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertificateDigest({self})")
    }
}

/// The first 8 bytes in hex (`sha256:0123456789abcdef`), enough to tell certificates apart in
/// messages.
impl fmt::Display for CertificateDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        self.0[..8].iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A zone (rack, availability zone, data centre): replicas of a key are spread over zones.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct Zone(Arc<str>);

impl TryFrom<String> for Zone {
    type Error = NameError;
    fn try_from(s: String) -> Result<Zone, NameError> {
        Zone::new(&s)
    }
}

impl Zone {
    /// A zone from its name, with the same rules as [`NodeId::new`].
    pub fn new(name: &str) -> Result<Zone, NameError> {
        check_name(name)?;
        Ok(Zone(Arc::from(name)))
    }

    /// The zone as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A name (node id, zone) that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("name is {len} bytes long; the limit is {MAX_NAME_LEN}")]
    TooLong {
        /// Length of the rejected name.
        len: usize,
    },
    /// The name holds a space, a control character or non-ASCII.
    #[error("name {name:?} may hold only printable ASCII without spaces")]
    BadCharacter {
        /// The rejected name.
        name: String,
    },
}

pub(crate) fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(NameError::BadCharacter { name: name.into() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(NodeId::new("node-1").is_ok());
        assert_eq!(NodeId::new(""), Err(NameError::Empty));
        assert!(matches!(NodeId::new("a b"), Err(NameError::BadCharacter { .. })));
        assert!(matches!(Zone::new(&"z".repeat(256)), Err(NameError::TooLong { len: 256 })));
    }

    /// 3.1: a node's writes are named `id#incarnation`; ids that could collide with such names are
    /// not node ids.
    #[test]
    fn incarnations_name_a_nodes_writes() {
        let n1 = NodeId::new("n1").unwrap();
        assert_eq!(n1.in_incarnation(7).unwrap().as_str(), "n1#7");
        assert_ne!(n1.in_incarnation(1), n1.in_incarnation(2));
        assert!(NodeId::new("n1#7").unwrap().in_incarnation(1).is_err());
        let longest = NodeId::new(&"n".repeat(MAX_NODE_ID_LEN)).unwrap();
        assert!(longest.in_incarnation(u64::MAX).is_ok());
        assert!(crate::membership::NodeInfo::new("n1#2", "a", "z", 1).is_err());
        assert!(crate::membership::NodeInfo::new(&"n".repeat(MAX_NODE_ID_LEN + 1), "a", "z", 1).is_err());
    }

    #[test]
    fn certificate_digests_tell_certificates_apart() {
        let (a, b) = (CertificateDigest::of(b"cert a"), CertificateDigest::of(b"cert b"));
        assert_ne!(a, b);
        assert_eq!(a, CertificateDigest::of(b"cert a"));
        // SHA-256("abc"), as in FIPS 180-2.
        let abc = CertificateDigest::of(b"abc");
        assert_eq!(alloc::format!("{abc}"), "sha256:ba7816bf8f01cfea");
    }
}
