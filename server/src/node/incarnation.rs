//! The node's incarnation, kept in the file `incarnation` in the node folder.
//!
//! A node mints its writes as `id#incarnation` (see `quickv_core::node::NodeConfig::incarnation`).
//! It keeps the incarnation it runs in and whether it stopped cleanly: a start after a clean
//! shutdown of a durable node goes on in the same incarnation (everything it minted is on disk);
//! any other start (a crash, a kill, a power loss, the memory engine) begins a new one, so a node
//! that may have lost writes never mints their dots again. The file is written, synced and
//! renamed into place before the node serves, and again after a clean shutdown.
//!
//! Format: a version byte, a CRC-32 of the body, and the body (the incarnation as 8 bytes
//! little-endian, then 1 if the node stopped cleanly, 0 if it is running or did not stop
//! cleanly).

use std::path::{Path, PathBuf};

use super::StartError;

/// The file's name in the node folder.
pub const FILE: &str = "incarnation";
const VERSION: u8 = 1;

#[derive(Debug)]
pub(crate) struct IncarnationFile {
    path: PathBuf,
}

impl IncarnationFile {
    pub(crate) fn new(dir: &Path) -> IncarnationFile {
        IncarnationFile { path: dir.join(FILE) }
    }

    fn bad(&self, reason: String) -> StartError {
        StartError::Incarnation { path: self.path.clone(), reason }
    }

    /// The last incarnation and whether the node stopped cleanly in it (`None`: no file yet).
    fn load(&self) -> Result<Option<(u64, bool)>, StartError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.bad(e.to_string())),
        };
        let [version, c0, c1, c2, c3, body @ ..] = bytes.as_slice() else {
            return Err(self.bad("file is truncated".into()));
        };
        if *version != VERSION {
            return Err(self.bad(format!("unknown format version {version}")));
        }
        if crc32fast::hash(body).to_le_bytes() != [*c0, *c1, *c2, *c3] {
            return Err(self.bad("checksum mismatch: the file is corrupt".into()));
        }
        let [n0, n1, n2, n3, n4, n5, n6, n7, clean] = body else {
            return Err(self.bad("file has the wrong length".into()));
        };
        let incarnation = u64::from_le_bytes([*n0, *n1, *n2, *n3, *n4, *n5, *n6, *n7]);
        match clean {
            0 | 1 => Ok(Some((incarnation, *clean == 1))),
            other => Err(self.bad(format!("invalid clean flag {other}"))),
        }
    }

    fn save(&self, incarnation: u64, clean: bool) -> Result<(), StartError> {
        let mut body = incarnation.to_le_bytes().to_vec();
        body.push(u8::from(clean));
        super::small_file::replace(&self.path, VERSION, &body).map_err(|e| self.bad(e.to_string()))
    }

    /// The incarnation to run in, recorded (as running) before it is returned: the same as last
    /// time after a clean shutdown of a node whose storage kept everything (durable, and nothing
    /// lost when it opened), a new one otherwise. The flag says whether the node ran before and
    /// did not stop cleanly with durable storage: then what it had not synced may be lost.
    pub(crate) fn begin(&self, kept_everything: bool) -> Result<(u64, bool), StartError> {
        let (next, after_loss) = match self.load()? {
            Some((last, true)) if kept_everything => (last, false),
            Some((last, _)) => (last.checked_add(1).ok_or_else(|| self.bad("incarnation overflow".into()))?, true),
            None => (1, false),
        };
        self.save(next, false)?;
        Ok((next, after_loss))
    }

    /// Records that the node stopped cleanly in `incarnation` (everything it minted is durable).
    pub(crate) fn end_cleanly(&self, incarnation: u64) -> Result<(), StartError> {
        self.save(incarnation, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_or_the_memory_engine_starts_a_new_incarnation_a_clean_stop_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = IncarnationFile::new(dir.path());
        assert_eq!(file.begin(true).unwrap(), (1, false), "first start");
        assert_eq!(file.begin(true).unwrap(), (2, true), "no clean shutdown in between: a crash");
        file.end_cleanly(2).unwrap();
        assert_eq!(file.begin(true).unwrap(), (2, false), "after a clean shutdown, the same");
        file.end_cleanly(2).unwrap();
        assert_eq!(file.begin(false).unwrap(), (3, true), "the memory engine lost everything anyway");
    }

    #[test]
    fn a_damaged_file_stops_the_start_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = IncarnationFile::new(dir.path());
        file.begin(true).unwrap();
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[6] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = file.begin(true).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch") && err.contains(FILE), "{err}");
        std::fs::write(&path, &bytes[..3]).unwrap();
        assert!(file.begin(true).unwrap_err().to_string().contains("truncated"));
    }
}
