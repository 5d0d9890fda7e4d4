//! Stores: named keyspaces whose replication and conflict rules are fixed at creation.
//!
//! ```
//! use quickv_core::store::{ConflictPolicy, Preset, QuorumKind, StoreConfig};
//!
//! let carts = StoreConfig::quorum(); // Dynamo's common setting
//! assert_eq!((carts.n(), carts.r(), carts.w()), (3, 2, 2));
//! let sessions = Preset::Eventual.config().with_conflicts(ConflictPolicy::Lww);
//! assert_eq!(sessions.quorum_kind(), QuorumKind::Sloppy);
//! assert!(StoreConfig::new(3, 4, 2, QuorumKind::Strict, ConflictPolicy::Siblings).is_err());
//! ```

use alloc::string::String;
use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

/// Largest replication factor a store may ask for.
pub const MAX_REPLICATION: u8 = 16;

/// Which replicas count towards a quorum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum QuorumKind {
    /// Fallback nodes stand in for unreachable replicas and keep a hint: always writable.
    Sloppy,
    /// Only the key's true replicas count.
    Strict,
}

impl QuorumKind {
    /// What a quorum failure of a store of this kind adds to its message: a strict store says
    /// that fallbacks never count.
    pub fn failure_note(self) -> &'static str {
        match self {
            QuorumKind::Strict => "; a strict store counts its N primaries only, never fallbacks",
            QuorumKind::Sloppy => "",
        }
    }
}

/// What happens to concurrent writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ConflictPolicy {
    /// Keep every concurrent version as a sibling for the reader to resolve.
    Siblings,
    /// Keep the version with the latest timestamp (ties broken by dot).
    Lww,
}

/// A store's fixed settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StoreConfig {
    n: u8,
    r: u8,
    w: u8,
    quorum: QuorumKind,
    conflicts: ConflictPolicy,
}

/// Why a store configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreConfigError {
    /// N is 0 or above [`MAX_REPLICATION`].
    #[error("replication factor N must be between 1 and {MAX_REPLICATION}, got {0}")]
    Replication(u8),
    /// R is 0 or greater than N.
    #[error("read quorum R must be between 1 and N={n}, got {r}")]
    ReadQuorum {
        /// Requested R.
        r: u8,
        /// Requested N.
        n: u8,
    },
    /// W is 0 or greater than N.
    #[error("write quorum W must be between 1 and N={n}, got {w}")]
    WriteQuorum {
        /// Requested W.
        w: u8,
        /// Requested N.
        n: u8,
    },
}

impl StoreConfig {
    /// A configuration, validated.
    pub fn new(
        n: u8,
        r: u8,
        w: u8,
        quorum: QuorumKind,
        conflicts: ConflictPolicy,
    ) -> Result<StoreConfig, StoreConfigError> {
        let config = StoreConfig { n, r, w, quorum, conflicts };
        config.validate()?;
        Ok(config)
    }

    /// The settings a put coordinator counts with while a ring change is under way: `n`
    /// replicas (both rings' together), W as it is (at most `n`; the joint quorum decides the
    /// rest). Never validated or stored: see
    /// [`ClusterView::write_plan`](crate::cluster::ClusterView::write_plan).
    pub fn for_transition(&self, n: usize) -> StoreConfig {
        let n = u8::try_from(n).unwrap_or(u8::MAX).max(1);
        StoreConfig { n, w: self.w.min(n), ..*self }
    }

    /// Checks a configuration (for example one decoded from the network).
    pub fn validate(&self) -> Result<(), StoreConfigError> {
        let StoreConfig { n, r, w, .. } = *self;
        if n == 0 || n > MAX_REPLICATION {
            return Err(StoreConfigError::Replication(n));
        }
        if r == 0 || r > n {
            return Err(StoreConfigError::ReadQuorum { r, n });
        }
        if w == 0 || w > n {
            return Err(StoreConfigError::WriteQuorum { w, n });
        }
        Ok(())
    }

    /// The catalogue entry of a dropped store: N=R=W=0, below every valid configuration, so that
    /// a drop wins every merge of the catalogue (which keeps the least configuration of a name).
    pub const fn dropped() -> StoreConfig {
        StoreConfig { n: 0, r: 0, w: 0, quorum: QuorumKind::Strict, conflicts: ConflictPolicy::Siblings }
    }

    /// Whether this is the entry of a dropped store.
    pub fn is_dropped(&self) -> bool {
        *self == StoreConfig::dropped()
    }

    /// `eventual`: N=3, R=1, W=1, sloppy, siblings.
    pub fn eventual() -> StoreConfig {
        StoreConfig { n: 3, r: 1, w: 1, quorum: QuorumKind::Sloppy, conflicts: ConflictPolicy::Siblings }
    }

    /// `quorum`: N=3, R=2, W=2, sloppy, siblings (Dynamo's common setting; the `default` store).
    pub fn quorum() -> StoreConfig {
        StoreConfig { n: 3, r: 2, w: 2, quorum: QuorumKind::Sloppy, conflicts: ConflictPolicy::Siblings }
    }

    /// The `quorum` preset for a cluster of `nodes` nodes: N = min(3, nodes), R and W a
    /// majority of N (1/1/1 on one node, 2/2/2 on two), so that writes can be met.
    pub fn quorum_for(nodes: usize) -> StoreConfig {
        let n = nodes.clamp(1, 3) as u8;
        StoreConfig { n, r: n / 2 + 1, w: n / 2 + 1, ..StoreConfig::quorum() }
    }

    /// How these settings fit a cluster of `nodes` nodes: `Err` when no write could ever be
    /// taken (a strict store with W above the nodes: fallbacks never count), `Ok(Some(warning))`
    /// when the store works only partly until more nodes join, `Ok(None)` when it fits.
    pub fn fit(&self, nodes: usize) -> Result<Option<String>, String> {
        let (n, w) = (self.n(), self.w());
        if w > nodes && self.quorum == QuorumKind::Strict {
            return Err(alloc::format!(
                "a strict store needs W={w} replicas for every write and the cluster has {nodes} node(s): no \
                 write could succeed (add nodes first, or lower W)"
            ));
        }
        Ok(if w > nodes {
            Some(alloc::format!("writes fail until the cluster has W={w} nodes (it has {nodes})"))
        } else if n > nodes {
            Some(alloc::format!("keys have fewer than N={n} replicas until the cluster has {n} nodes (it has {nodes})"))
        } else {
            None
        })
    }

    /// `strict`: N=3, R=2, W=2, strict, siblings.
    pub fn strict() -> StoreConfig {
        StoreConfig { n: 3, r: 2, w: 2, quorum: QuorumKind::Strict, conflicts: ConflictPolicy::Siblings }
    }

    /// The same configuration with another conflict policy.
    pub fn with_conflicts(self, conflicts: ConflictPolicy) -> StoreConfig {
        StoreConfig { conflicts, ..self }
    }

    /// Replication factor.
    pub fn n(&self) -> usize {
        usize::from(self.n)
    }

    /// Read quorum.
    pub fn r(&self) -> usize {
        usize::from(self.r)
    }

    /// Write quorum.
    pub fn w(&self) -> usize {
        usize::from(self.w)
    }

    /// Quorum kind.
    pub fn quorum_kind(&self) -> QuorumKind {
        self.quorum
    }

    /// Conflict policy.
    pub fn conflicts(&self) -> ConflictPolicy {
        self.conflicts
    }
}

impl fmt::Display for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n={} r={} w={} quorum={} conflicts={}", self.n, self.r, self.w, self.quorum, self.conflicts)
    }
}

/// Named presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Preset {
    /// See [`StoreConfig::eventual`].
    Eventual,
    /// See [`StoreConfig::quorum`].
    Quorum,
    /// See [`StoreConfig::strict`].
    Strict,
}

impl Preset {
    /// The preset's configuration.
    pub fn config(self) -> StoreConfig {
        match self {
            Preset::Eventual => StoreConfig::eventual(),
            Preset::Quorum => StoreConfig::quorum(),
            Preset::Strict => StoreConfig::strict(),
        }
    }
}

/// A word that names no known option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {got:?}; expected one of {expected}")]
pub struct UnknownName {
    what: &'static str,
    got: String,
    expected: &'static str,
}

macro_rules! named {
    ($ty:ident, $what:literal, $($name:literal => $variant:ident),+) => {
        impl FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<$ty, UnknownName> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(UnknownName { what: $what, got: s.into(), expected: concat!($($name, " "),+) }),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $($ty::$variant => $name,)+ })
            }
        }
    };
}
named!(Preset, "preset", "eventual" => Eventual, "quorum" => Quorum, "strict" => Strict);
named!(QuorumKind, "quorum kind", "sloppy" => Sloppy, "strict" => Strict);
named!(ConflictPolicy, "conflict policy", "siblings" => Siblings, "lww" => Lww);

/// Longest store name, in bytes.
pub const MAX_STORE_NAME: usize = 64;

/// A store's name: 1 to 64 characters of `a-z`, `0-9`, `-` and `_`, starting with a letter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct StoreName(String);

impl TryFrom<String> for StoreName {
    type Error = StoreNameError;
    fn try_from(s: String) -> Result<StoreName, StoreNameError> {
        StoreName::new(&s)
    }
}

/// Why a store name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store name {0:?} must be 1 to {MAX_STORE_NAME} characters of a-z, 0-9, '-' and '_', starting with a letter")]
pub struct StoreNameError(pub String);

impl StoreName {
    /// The store every cluster starts with (preset `quorum`).
    pub const DEFAULT: &'static str = "default";

    /// A checked store name.
    pub fn new(name: &str) -> Result<StoreName, StoreNameError> {
        let ok = !name.is_empty()
            && name.len() <= MAX_STORE_NAME
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok { Ok(StoreName(name.into())) } else { Err(StoreNameError(name.into())) }
    }

    /// The `default` store's name.
    pub fn default_store() -> StoreName {
        StoreName(StoreName::DEFAULT.into())
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StoreName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Request size limits a node enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Longest key, in bytes (default and most: [`MAX_ENGINE_KEY`], 65,535).
    pub max_key: usize,
    /// Largest value, in bytes (default 16 MiB).
    pub max_value: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_key: MAX_ENGINE_KEY, max_value: 16 * 1024 * 1024 }
    }
}

/// The longest key the storage engine takes (fjall: 65,535 bytes); `max_key` may not exceed it.
pub const MAX_ENGINE_KEY: usize = 65_535;

/// A key or value outside the limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// Keys may not be empty.
    #[error("key is empty")]
    EmptyKey,
    /// The key is over `max_key`.
    #[error("key is {len} bytes; the limit (max_key) is {limit}")]
    KeyTooLong {
        /// Key length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The value is over `max_value`.
    #[error("value is {len} bytes; the limit (max_value) is {limit}")]
    ValueTooLarge {
        /// Value length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The key limit is over what the storage engine stores.
    #[error("max_key {max_key} is over the {engine} bytes the storage engine takes as a key")]
    MaxKeyOverEngine {
        /// The configured limit.
        max_key: usize,
        /// The engine's limit.
        engine: usize,
    },
}

/// Room a frame needs beyond its key and value: ids, names, contexts, the envelope.
pub const FRAME_OVERHEAD: usize = 4096;

impl Limits {
    /// The largest frame a node reads or a caller should send under these limits: one value,
    /// one key and the envelope around them. The one place the frame limit is derived.
    pub fn max_frame(&self) -> usize {
        self.max_value.saturating_add(self.max_key).saturating_add(FRAME_OVERHEAD)
    }

    /// The largest state (all versions of a key, encoded) a replica takes a write into: what an
    /// answer or a replicate frame can carry around it. A write that would make a key's state
    /// larger is refused, so that every key stays readable.
    pub fn max_state(&self) -> usize {
        self.max_value.saturating_add(FRAME_OVERHEAD / 2)
    }

    /// Checks the limits themselves: keys the engine cannot store are refused up front.
    pub fn validate(&self) -> Result<(), LimitError> {
        if self.max_key > MAX_ENGINE_KEY {
            return Err(LimitError::MaxKeyOverEngine { max_key: self.max_key, engine: MAX_ENGINE_KEY });
        }
        Ok(())
    }

    /// Checks a key.
    pub fn check_key(&self, key: &[u8]) -> Result<(), LimitError> {
        match key.len() {
            0 => Err(LimitError::EmptyKey),
            len if len > self.max_key => Err(LimitError::KeyTooLong { len, limit: self.max_key }),
            _ => Ok(()),
        }
    }

    /// Checks a value.
    pub fn check_value(&self, value: &[u8]) -> Result<(), LimitError> {
        if value.len() > self.max_value {
            return Err(LimitError::ValueTooLarge { len: value.len(), limit: self.max_value });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3.9: the default store of a cluster of one or two nodes can meet its writes; settings
    /// that need more nodes are flagged, and refused when no write could ever succeed.
    #[test]
    fn settings_fit_the_cluster_size() {
        assert_eq!((StoreConfig::quorum_for(1).n(), StoreConfig::quorum_for(1).w()), (1, 1));
        assert_eq!((StoreConfig::quorum_for(2).n(), StoreConfig::quorum_for(2).r()), (2, 2));
        assert_eq!(StoreConfig::quorum_for(7), StoreConfig::quorum());
        for nodes in 1..=3 {
            assert_eq!(StoreConfig::quorum_for(nodes).fit(nodes), Ok(None));
        }
        assert!(StoreConfig::strict().fit(1).unwrap_err().contains("W=2"));
        assert!(StoreConfig::quorum().fit(1).unwrap().unwrap().contains("writes fail until the cluster has W=2"));
        assert!(StoreConfig::strict().fit(2).unwrap().unwrap().contains("fewer than N=3 replicas"));
        assert_eq!(StoreConfig::strict().fit(3), Ok(None));
    }
    use alloc::string::ToString;

    #[test]
    fn presets_match_the_documented_settings() {
        assert_eq!(Preset::Eventual.config().to_string(), "n=3 r=1 w=1 quorum=sloppy conflicts=siblings");
        assert_eq!(Preset::Quorum.config().to_string(), "n=3 r=2 w=2 quorum=sloppy conflicts=siblings");
        assert_eq!(Preset::Strict.config().to_string(), "n=3 r=2 w=2 quorum=strict conflicts=siblings");
        assert_eq!("lww".parse::<ConflictPolicy>(), Ok(ConflictPolicy::Lww));
        assert!("fast".parse::<Preset>().unwrap_err().to_string().contains("eventual quorum strict"));
    }

    #[test]
    fn invalid_quorums_are_refused() {
        use ConflictPolicy::Siblings;
        use QuorumKind::Sloppy;
        assert_eq!(StoreConfig::new(0, 1, 1, Sloppy, Siblings), Err(StoreConfigError::Replication(0)));
        assert_eq!(StoreConfig::new(17, 1, 1, Sloppy, Siblings), Err(StoreConfigError::Replication(17)));
        assert_eq!(StoreConfig::new(3, 0, 1, Sloppy, Siblings), Err(StoreConfigError::ReadQuorum { r: 0, n: 3 }));
        assert_eq!(StoreConfig::new(3, 2, 4, Sloppy, Siblings), Err(StoreConfigError::WriteQuorum { w: 4, n: 3 }));
        assert_eq!(
            StoreConfig::new(3, 0, 1, Sloppy, Siblings).unwrap_err().to_string(),
            "read quorum R must be between 1 and N=3, got 0"
        );
        assert!(StoreConfig::new(5, 3, 3, Sloppy, Siblings).is_ok());
    }

    #[test]
    fn names_and_limits_are_checked() {
        assert!(StoreName::new("carts_2").is_ok());
        for bad in ["", "Carts", "1x", "a b", &"a".repeat(65)] {
            assert!(StoreName::new(bad).is_err(), "{bad:?}");
        }
        let limits = Limits { max_key: 4, max_value: 8 };
        assert_eq!(limits.check_key(b""), Err(LimitError::EmptyKey));
        assert_eq!(limits.check_key(b"12345"), Err(LimitError::KeyTooLong { len: 5, limit: 4 }));
        assert_eq!(
            limits.check_value(&[0; 9]).unwrap_err().to_string(),
            "value is 9 bytes; the limit (max_value) is 8"
        );
        assert!(limits.check_value(&[0; 8]).is_ok());
    }
}
