//! The cluster view a node keeps on disk, so that a restarted node knows its cluster and stores.
//!
//! The file is a version byte, a CRC-32 of the body, and the postcard encoding of the
//! [`ClusterView`]; it is replaced atomically (written aside, synced, renamed).

use std::path::{Path, PathBuf};

use quickv_core::cluster::ClusterView;

use super::StartError;

/// The file's name in the node folder.
pub const FILE: &str = "cluster.view";
const VERSION: u8 = 1;

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
        if header[0] != VERSION {
            return Err(bad(format!("unknown format version {}", header[0])));
        }
        if header[1..5] != crc32fast::hash(body).to_le_bytes() {
            return Err(bad("checksum mismatch: the file is corrupt".into()));
        }
        let view: ClusterView = postcard::from_bytes(body).map_err(|e| bad(format!("undecodable: {e}")))?;
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
