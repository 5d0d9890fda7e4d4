//! The cluster view a node keeps on disk, so that a restarted node knows its cluster and stores.
//!
//! The file is a version byte, a CRC-32 of the body, and the postcard encoding of the
//! [`ClusterView`]; it is replaced atomically (written aside, synced, renamed). Formats 1 (node
//! entries without certificates), 2 (no ring change under way) and 3 (node entries without web
//! access) still load; the node saves format 4.

use std::path::{Path, PathBuf};

use quickv_core::cluster::{ClusterView, ViewBeforeCertificates, ViewBeforeTransitions, ViewBeforeWebAccess};

use super::StartError;

/// The file's name in the node folder.
pub const FILE: &str = "cluster.view";
const VERSION: u8 = 4;

#[derive(Debug)]
pub(crate) struct SavedView {
    path: PathBuf,
    lock: std::sync::Mutex<()>,
}

impl SavedView {
    pub(crate) fn new(path: PathBuf) -> SavedView {
        SavedView { path, lock: std::sync::Mutex::new(()) }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn load(&self) -> Result<Option<ClusterView>, StartError> {
        let bad = |reason: String| StartError::SavedView { path: self.path.clone(), reason };
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(bad(e.to_string())),
        };
        let (header, body) = bytes.split_at_checked(5).ok_or_else(|| bad("file is truncated".into()))?;
        if !(1..=VERSION).contains(&header[0]) {
            return Err(bad(format!("unknown format version {}", header[0])));
        }
        if header[1..5] != crc32fast::hash(body).to_le_bytes() {
            return Err(bad("checksum mismatch: the file is corrupt".into()));
        }
        let undecodable = |e: postcard::Error| bad(format!("undecodable: {e}"));
        let view: ClusterView = match header[0] {
            1 => postcard::from_bytes::<ViewBeforeCertificates>(body).map_err(undecodable)?.into(),
            2 => postcard::from_bytes::<ViewBeforeTransitions>(body).map_err(undecodable)?.into(),
            3 => postcard::from_bytes::<ViewBeforeWebAccess>(body).map_err(undecodable)?.into(),
            _ => postcard::from_bytes(body).map_err(undecodable)?,
        };
        view.validate().map_err(|e| bad(e.to_string()))?;
        Ok(Some(view))
    }

    pub(crate) fn save(&self, view: &ClusterView) -> Result<(), StartError> {
        let bad = |e: std::io::Error| StartError::SavedView { path: self.path.clone(), reason: e.to_string() };
        let body = quickv_core::encoding::to_vec(view);
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        super::small_file::replace(&self.path, VERSION, &body).map_err(bad)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use quickv_core::identity::{CertificateDigest, NodeId, Zone};
    use quickv_core::membership::{NodeInfo, NodeStatus};
    use quickv_core::store::{StoreConfig, StoreName};
    use serde::Serialize;

    use super::*;

    /// A node entry as format 1 wrote it (before certificates).
    #[derive(Serialize)]
    struct EntryV1 {
        version: u64,
        id: NodeId,
        address: String,
        zone: Zone,
        capacity: u32,
        status: NodeStatus,
    }

    /// A view saved by an earlier build (format 1) loads, its entries without certificates; the
    /// next save writes format 2, which loads back equal.
    #[test]
    fn a_view_saved_before_certificates_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let file = SavedView::new(dir.path().join(FILE));
        let id = NodeId::new("n1").unwrap();
        let entry = EntryV1 {
            version: 3,
            id: id.clone(),
            address: "127.0.0.1:7101".into(),
            zone: Zone::new("z1").unwrap(),
            capacity: 2,
            status: NodeStatus::Up,
        };
        let stores = BTreeMap::from([(StoreName::default_store(), StoreConfig::quorum())]);
        let body = postcard::to_allocvec(&(6u8, BTreeMap::from([(id.clone(), entry)]), None::<()>, stores)).unwrap();
        crate::node::small_file::replace(file.path(), 1, &body).unwrap();
        let view = file.load().unwrap().expect("a view");
        let node = view.membership().node(&id).expect("n1 is known");
        assert_eq!((node.version, node.capacity, node.certificate), (3, 2, None));
        assert_eq!(view.store(&StoreName::default_store()), Some(&StoreConfig::quorum()));
        let mut upgraded = view.clone();
        let mut info =
            NodeInfo::new("n1", "127.0.0.1:7101", "z1", 2).unwrap().with_certificate(CertificateDigest::of(b"n1"));
        info.version = 3;
        assert_eq!(upgraded.upsert_node(info), Ok(true), "the entry gains its certificate");
        file.save(&upgraded).unwrap();
        assert_eq!(std::fs::read(file.path()).unwrap()[0], VERSION);
        assert_eq!(file.load().unwrap(), Some(upgraded));
    }

    /// A node entry as formats 2 and 3 wrote it (before web access).
    #[derive(Serialize)]
    struct EntryV3 {
        version: u64,
        id: NodeId,
        address: String,
        zone: Zone,
        capacity: u32,
        status: NodeStatus,
        certificate: Option<CertificateDigest>,
    }

    /// One node's view (ring, default store) as today's format saves it, and the same view
    /// encoded as `old` (2 or 3) did: entries without web access, and in 2 no transition.
    fn view_and_older_body(old: u8) -> (ClusterView, Vec<u8>) {
        let mut view = ClusterView::new(6);
        let info =
            NodeInfo::new("n1", "127.0.0.1:7101", "z1", 1).unwrap().with_certificate(CertificateDigest::of(b"n1"));
        view.upsert_node(info.clone()).unwrap();
        view.advance_ring(&info.id).unwrap();
        view.create_store(StoreName::default_store(), StoreConfig::quorum()).unwrap();
        let entry = EntryV3 {
            version: info.version,
            id: info.id.clone(),
            address: info.address.clone(),
            zone: info.zone.clone(),
            capacity: info.capacity,
            status: info.status,
            certificate: info.certificate,
        };
        let stores = BTreeMap::from([(StoreName::default_store(), StoreConfig::quorum())]);
        let membership = BTreeMap::from([(info.id.clone(), entry)]);
        let ring = view.ring().cloned();
        let mut body = postcard::to_allocvec(&(6u8, membership, ring, stores)).unwrap();
        if old == 3 {
            body.push(0); // no transition
        }
        (view, body)
    }

    /// A view saved before ring changes were staged (format 2: the view without its transition)
    /// loads with none under way.
    #[test]
    fn a_view_saved_before_transitions_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let file = SavedView::new(dir.path().join(FILE));
        let (view, body) = view_and_older_body(2);
        crate::node::small_file::replace(file.path(), 2, &body).unwrap();
        assert_eq!(file.load().unwrap(), Some(view));
    }

    /// A view saved before node entries published their web access (format 3) loads, its
    /// entries publishing none; the next save writes today's format.
    #[test]
    fn a_view_saved_before_web_access_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let file = SavedView::new(dir.path().join(FILE));
        let (view, body) = view_and_older_body(3);
        crate::node::small_file::replace(file.path(), 3, &body).unwrap();
        let loaded = file.load().unwrap().expect("a view");
        assert_eq!(loaded, view);
        let id = NodeId::new("n1").unwrap();
        assert_eq!(loaded.membership().node(&id).unwrap().web, Default::default());
        // Today's format does not read as format 3: the web access is in the entries.
        let today = quickv_core::encoding::to_vec(&view);
        assert_ne!(today, body);
        file.save(&loaded).unwrap();
        assert_eq!(std::fs::read(file.path()).unwrap()[0], 4);
        assert_eq!(file.load().unwrap(), Some(view));
    }
}
