//! Frames of wire versions 3 to 6, still decoded: they differ from today's in routed requests
//! (the ring's epoch only), which are refused with [`DecodeError::RoutedBeforeDigests`] so the
//! caller learns to upgrade, and in status answers (no stored bytes), which do not decode;
//! other requests and responses read as today's (the differences of each
//! version in gossip, membership and writes are refused by [`super::decode`]).

use serde::Deserialize;

use super::{DecodeError, Message as Current, Request, Response};

/// A message as versions 3 to 6 encode it.
#[derive(Debug, Deserialize)]
enum Message {
    Request {
        id: u64,
        body: Request,
    },
    Response {
        id: u64,
        body: Response,
    },
    // Decoded only to be refused with a clear error.
    #[allow(dead_code)]
    Routed {
        id: u64,
        epoch: u64,
        body: Request,
    },
}

/// Decodes one message of `version` from `body`, and the bytes after it.
pub(super) fn take(body: &[u8], version: u8) -> Result<(Current, &[u8]), DecodeError> {
    let (message, rest) =
        postcard::take_from_bytes::<Message>(body).map_err(|_| DecodeError::UnsupportedVersion(version))?;
    let current = match message {
        Message::Request { id, body } => Current::Request { id, body },
        Message::Response { id, body } => Current::Response { id, body },
        Message::Routed { .. } => return Err(DecodeError::RoutedBeforeDigests(version)),
    };
    Ok((current, rest))
}
