//! Keys and store names in request paths.
//!
//! A key is arbitrary bytes. In a path it is one segment, percent-encoded as RFC 3986 says: each
//! byte may be written `%XX` (two hex digits, either case), and every byte that is not an
//! unreserved character (`A-Z a-z 0-9 - . _ ~`) or one of the sub-delimiters and `:` `@` a path
//! segment allows should be. So `cart:42` is `cart:42`, the bytes `00 ff` are `%00%FF`, and a
//! slash inside a key is `%2F`. JavaScript's `encodeURIComponent` (for UTF-8 text) and percent-
//! encoding every byte (for `Uint8Array`) both give paths that decode to the key's bytes. A `%`
//! not followed by two hex digits is refused, never guessed at.

/// Why a path segment did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum SegmentError {
    /// A `%` not followed by two hex digits.
    #[error("'%' at byte {0} is not followed by two hex digits")]
    BadEscape(usize),
    /// Nothing between the slashes.
    #[error("it is empty")]
    Empty,
}

/// The bytes a percent-encoded path segment stands for.
pub(crate) fn decode_segment(segment: &str) -> Result<Vec<u8>, SegmentError> {
    if segment.is_empty() {
        return Err(SegmentError::Empty);
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        if byte != b'%' {
            out.push(byte);
            at += 1;
            continue;
        }
        let hex = |i: usize| bytes.get(i).and_then(|b| (*b as char).to_digit(16));
        match (hex(at + 1), hex(at + 2)) {
            (Some(high), Some(low)) => out.push((high * 16 + low) as u8),
            _ => return Err(SegmentError::BadEscape(at)),
        }
        at += 3;
    }
    Ok(out)
}

/// `bytes` percent-encoded as one path segment (every byte but the unreserved characters).
#[cfg(test)]
pub(crate) fn encode_segment(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_decode_to_the_bytes_they_encode() {
        assert_eq!(decode_segment("cart:42").unwrap(), b"cart:42");
        assert_eq!(decode_segment("a%2Fb%2fc").unwrap(), b"a/b/c");
        assert_eq!(decode_segment("%00%FF%e9").unwrap(), [0x00, 0xff, 0xe9]);
        assert_eq!(decode_segment("caf%C3%A9+x").unwrap(), "café+x".as_bytes());
        for bytes in [&b"\x00\x01\xfe\xff"[..], b"cart/42?x=1#y", b"%%", "ünï".as_bytes()] {
            assert_eq!(decode_segment(&encode_segment(bytes)).unwrap(), bytes);
        }
    }

    #[test]
    fn a_bad_escape_or_an_empty_segment_is_refused() {
        assert_eq!(decode_segment("ab%4"), Err(SegmentError::BadEscape(2)));
        assert_eq!(decode_segment("%zz"), Err(SegmentError::BadEscape(0)));
        assert_eq!(decode_segment("%"), Err(SegmentError::BadEscape(0)));
        assert_eq!(decode_segment(""), Err(SegmentError::Empty));
    }
}
