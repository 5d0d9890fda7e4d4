//! The node's small files (the saved view, the incarnation, the browser certificates): a version
//! byte, a CRC-32 of the body, and the body, replaced atomically and durably.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Replaces `path` with `version`, the CRC-32 of `body` and `body`: written aside, synced,
/// renamed into place, and the folder synced so that the rename survives a power loss.
pub(crate) fn replace(path: &Path, version: u8, body: &[u8]) -> std::io::Result<()> {
    replace_with_mode(path, version, body, 0o666)
}

/// [`replace`] for a file that holds private keys: readable by its owner only (mode 0600).
pub(crate) fn replace_private(path: &Path, version: u8, body: &[u8]) -> std::io::Result<()> {
    replace_with_mode(path, version, body, 0o600)
}

fn replace_with_mode(path: &Path, version: u8, body: &[u8], mode: u32) -> std::io::Result<()> {
    let aside = path.with_extension("tmp");
    // A file left aside by a crash may have another mode: start afresh.
    let _ = std::fs::remove_file(&aside);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&aside)?;
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
