//! The on-disk record of one key: a version byte, a CRC-32 over key and body, and the body (the
//! postcard encoding of the key's [`KeyRecord`]: its siblings and the ids of the writes this
//! replica minted for it last).
//!
//! ```text
//! +---------+----------------------+---------------------+
//! | version | crc32(key ++ body)   | postcard(KeyRecord) |
//! | 1 byte  | 4 bytes, little end. | rest                |
//! +---------+----------------------+---------------------+
//! ```
//!
//! The checksum covers the key, so a record that ends up under the wrong key is caught too.
//! Version 2 adds write ids (each version's, and the replica's latest minted ones); version 1
//! records (postcard of the siblings alone) still decode, their versions read as made by writes
//! without an id, and are rewritten as version 2 when the key next changes.
//! A record that fails its checksum, has an unknown version or decodes to an ill-formed state is
//! reported as [`StorageError::Corrupt`], never returned as data.

use quickv_core::version::{KeyRecord, v1};

use super::StorageError;

/// The record format this build writes.
pub const RECORD_VERSION: u8 = 2;

const HEADER: usize = 5;

/// Encodes a key's record.
pub fn encode(key: &[u8], record: &KeyRecord) -> Vec<u8> {
    let body = quickv_core::encoding::to_vec(record);
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.push(RECORD_VERSION);
    out.extend_from_slice(&checksum(key, &body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes and checks a record read for `key` in `space`.
pub fn decode(space: &str, key: &[u8], record: &[u8]) -> Result<KeyRecord, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        space: space.into(),
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    let (header, body) = record.split_at_checked(HEADER).ok_or_else(|| corrupt("record is truncated".into()))?;
    let (&version, sum) = header.split_first().ok_or_else(|| corrupt("record is truncated".into()))?;
    if version != RECORD_VERSION && version != 1 {
        return Err(corrupt(format!("unknown record version {version}")));
    }
    let stored = u32::from_le_bytes(sum.try_into().map_err(|_| corrupt("record is truncated".into()))?);
    if stored != checksum(key, body) {
        return Err(corrupt("checksum mismatch".into()));
    }
    let undecodable = |e: postcard::Error| corrupt(format!("undecodable state: {e}"));
    let record = match version {
        1 => KeyRecord::new(
            postcard::from_bytes::<v1::Siblings>(body)
                .map_err(undecodable)?
                .into_current()
                .map_err(|e| corrupt(format!("ill-formed state: {e}")))?,
        ),
        _ => postcard::from_bytes::<KeyRecord>(body).map_err(undecodable)?,
    };
    record.siblings.validate().map_err(|e| corrupt(format!("ill-formed state: {e}")))?;
    Ok(record)
}

fn checksum(key: &[u8], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&(key.len() as u64).to_le_bytes());
    hasher.update(key);
    hasher.update(body);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickv_core::identity::NodeId;
    use quickv_core::store::ConflictPolicy;
    use quickv_core::version::{CausalContext, Siblings, Write, WriteId};

    fn state() -> KeyRecord {
        let mut s = Siblings::new();
        let a = NodeId::new("a").unwrap();
        s.apply(&a, &Write::put(b"v".to_vec(), CausalContext::empty(), 5), ConflictPolicy::Siblings).unwrap();
        KeyRecord::new(s)
    }

    #[test]
    fn records_round_trip() {
        let s = state();
        assert_eq!(decode("default", b"k", &encode(b"k", &s)).unwrap(), s);
    }

    #[test]
    fn every_flipped_bit_and_truncation_is_caught() {
        let record = encode(b"k", &state());
        for i in 0..record.len() {
            for bit in 0..8 {
                let mut bad = record.clone();
                bad[i] ^= 1 << bit;
                assert!(decode("default", b"k", &bad).is_err(), "flip of bit {bit} of byte {i} went unnoticed");
            }
        }
        for cut in 0..record.len() {
            assert!(decode("default", b"k", &record[..cut]).is_err());
        }
    }

    #[test]
    fn a_record_under_another_key_is_caught() {
        let err = decode("default", b"other", &encode(b"k", &state())).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }

    /// Records written by format version 1 must keep decoding; their versions have no write id
    /// (as `state()`'s write has none).
    #[test]
    fn version_1_records_still_decode() {
        let golden: &[u8] = &[1, 85, 32, 39, 71, 1, 1, b'a', 1, 1, 1, b'a', 1, 5, 0, 1, b'v'];
        assert_eq!(decode("default", b"k", golden).unwrap(), state());
    }

    /// Version 2 records carry write ids: each version's, and the ones minted here.
    #[test]
    fn version_2_records_keep_write_ids() {
        let mut s = KeyRecord::default();
        let write = Write::put(b"v".to_vec(), CausalContext::empty(), 5).with_id(WriteId(77));
        s.apply(&NodeId::new("a").unwrap(), &write, ConflictPolicy::Siblings).unwrap();
        let record = encode(b"k", &s);
        assert_eq!(record[0], 2);
        let back = decode("default", b"k", &record).unwrap();
        assert_eq!(back.siblings.versions()[0].write, WriteId(77));
        assert!(back.minted(WriteId(77)));
        assert_eq!(back, s);
    }
}
