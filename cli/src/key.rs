//! A key as the command line gives it: text, or hex for keys that are not UTF-8.

use anyhow::{Result, bail};
use clap::Args;

/// The key argument of `put`, `get`, `delete` and `locate`.
#[derive(Args, Clone, Debug)]
pub struct KeyArg {
    /// The key (its UTF-8 bytes; with --key-hex, hex digits).
    key: String,
    /// The key is given in hex (two digits a byte), for keys that are not UTF-8.
    #[arg(long)]
    key_hex: bool,
}

impl KeyArg {
    /// The key's bytes.
    pub fn bytes(&self) -> Result<Vec<u8>> {
        if self.key_hex { from_hex(&self.key) } else { Ok(self.key.clone().into_bytes()) }
    }

    /// The key as given, for messages and JSON.
    pub fn shown(&self) -> &str {
        &self.key
    }
}

/// Decodes hex digits (upper or lower case) two to a byte.
fn from_hex(text: &str) -> Result<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        bail!("--key-hex: {text:?} has an odd number of digits (two hex digits a byte, for example 00ff)");
    }
    let digit = |c: u8| -> Result<u8> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => bail!("--key-hex: {text:?} holds {:?}, not a hex digit (0-9, a-f)", char::from(c)),
        }
    };
    text.as_bytes().chunks(2).map(|pair| Ok(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_keys_decode_and_bad_ones_say_why() {
        assert_eq!(from_hex("00ffA0").unwrap(), vec![0, 255, 160]);
        assert_eq!(from_hex("").unwrap(), Vec::<u8>::new());
        assert!(from_hex("abc").unwrap_err().to_string().contains("odd number of digits"));
        assert!(from_hex("zz").unwrap_err().to_string().contains("not a hex digit"));
        let text = KeyArg { key: "cart".into(), key_hex: false };
        assert_eq!(text.bytes().unwrap(), b"cart");
    }
}
