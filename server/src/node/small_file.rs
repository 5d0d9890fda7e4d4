//! The node's small files (the saved view, the incarnation): a version byte, a CRC-32 of the
//! body, and the body, replaced atomically and durably.

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `version`, the CRC-32 of `body` and `body`: written aside, synced,
/// renamed into place, and the folder synced so that the rename survives a power loss.
pub(crate) fn replace(path: &Path, version: u8, body: &[u8]) -> std::io::Result<()> {
    let aside = path.with_extension("tmp");
    let mut file = std::fs::File::create(&aside)?;
    file.write_all(&[version])?;
    file.write_all(&crc32fast::hash(body).to_le_bytes())?;
    file.write_all(body)?;
    file.sync_all()?;
    std::fs::rename(&aside, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
