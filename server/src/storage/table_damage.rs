//! Damage inside fjall's table files: a block that fails its checksum (a flipped byte on disk)
//! or does not decode.
//!
//! fjall opens a database whose tables hold a damaged block, and reads every key outside that
//! block; a read of a key inside it fails (`ChecksumMismatch`), and an iterator that reaches it
//! yields the error and ends. The durable engine therefore:
//!
//! - reports a read that meets damage as [`StorageError::Corrupt`], so the node takes the
//!   record for damaged (served by the other replicas, rebuilt from them), never as an engine
//!   failure that would fail every request for the key in the same way forever;
//! - goes on past a damaged block in a scan: it looks for the first key it can read after the
//!   last one it read ([`first_readable_after`]), by seeking ever further ahead (the first 16
//!   bytes of the key read as a number, plus 1, 2, 4, ...: at most twice as far as the damage
//!   reaches, in at most 128 seeks), and reports the keys in between as
//!   [`ScanItem::Unreadable`](super::ScanItem::Unreadable): their names are lost with the block.
//!   The node then has the other replicas' copies brought in (`Event::DamagedRange`).
//!
//! Compaction rewrites tables only from blocks it can read, so it stops at a damaged block and
//! leaves it in place; the records that replace the lost ones are newer and shadow them.

use fjall::{Keyspace, LsmError};

use super::StorageError;

/// Whether `error` says the bytes of a table are damaged (rather than the disk failing).
pub(super) fn is_damage(error: &fjall::Error) -> bool {
    matches!(
        error,
        fjall::Error::Storage(
            LsmError::ChecksumMismatch { .. }
                | LsmError::Decompress(_)
                | LsmError::InvalidTag(_)
                | LsmError::InvalidTrailer
                | LsmError::InvalidHeader(_)
                | LsmError::InvalidVersion(_)
        ) | fjall::Error::Decompress(_)
            | fjall::Error::InvalidTag(_)
            | fjall::Error::InvalidTrailer
    )
}

/// The first key of `keyspace` after `after` that can be read (`None`: none can, up to the end);
/// keys in between may be in a damaged block. See the module docs.
pub(super) fn first_readable_after(keyspace: &Keyspace, after: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
    for step in 0..128 {
        let Some(candidate) = ahead(after, step) else { return Ok(None) };
        match keyspace.range(candidate.as_slice()..).next() {
            None => return Ok(None),
            Some(guard) => match guard.into_inner() {
                Ok((key, _)) => return Ok(Some(key.to_vec())),
                Err(e) if is_damage(&e) => continue,
                Err(e) => return Err(StorageError::Engine(e.to_string())),
            },
        }
    }
    Ok(None)
}

/// A key `2^step` past `key`'s first 16 bytes read as a big-endian number (zero-padded), so
/// greater than `key` itself; `None` past the largest.
fn ahead(key: &[u8], step: u32) -> Option<[u8; 16]> {
    let mut prefix = [0u8; 16];
    let len = key.len().min(16);
    prefix[..len].copy_from_slice(&key[..len]);
    let moved = u128::from_be_bytes(prefix).checked_add(1u128.checked_shl(step)?)?;
    Some(moved.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::ahead;

    /// Every key ahead is greater than the key, and each step goes further.
    #[test]
    fn keys_ahead_grow() {
        for key in [&b""[..], b"a", b"key006837", &[0xff; 20], &[7; 16]] {
            let mut last: Option<[u8; 16]> = None;
            for step in 0..128 {
                let Some(next) = ahead(key, step) else { break };
                assert!(next.as_slice() > key, "{key:?} step {step}");
                assert!(last.is_none_or(|l| next > l));
                last = Some(next);
            }
        }
        assert_eq!(ahead(&[0xff; 16], 0), None, "nothing is past the largest");
    }
}
