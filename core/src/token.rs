//! Key tokens: the position of a key on the ring.
//!
//! As in Dynamo, a key's token is the MD5 digest of its bytes read as a 128-bit big-endian
//! integer. MD5 is used for its spread, not for security.

use core::fmt;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// A position on the 128-bit ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Token(pub u128);

impl Token {
    /// The smallest token.
    pub const MIN: Token = Token(0);
    /// The largest token.
    pub const MAX: Token = Token(u128::MAX);

    /// The token of a key: MD5 of its bytes, big-endian.
    pub fn of(key: &[u8]) -> Token {
        let digest = Md5::digest(key);
        Token(u128::from_be_bytes(digest.into()))
    }
}

impl fmt::Display for Token {
    /// Renders the token as 32 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// An inclusive, non-wrapping range of tokens `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TokenRange {
    first: Token,
    last: Token,
}

impl TokenRange {
    /// The whole ring.
    pub const FULL: TokenRange = TokenRange { first: Token::MIN, last: Token::MAX };

    /// The range `first..=last`, or `None` when `first > last`.
    pub fn new(first: Token, last: Token) -> Option<TokenRange> {
        (first <= last).then_some(TokenRange { first, last })
    }

    /// First token in the range.
    pub fn first(&self) -> Token {
        self.first
    }

    /// Last token in the range (inclusive).
    pub fn last(&self) -> Token {
        self.last
    }

    /// Whether `token` lies in the range.
    pub fn contains(&self, token: Token) -> bool {
        self.first <= token && token <= self.last
    }

    /// The number of tokens in the range minus one (the full ring has 2^128 tokens, which does
    /// not fit in a `u128`).
    pub fn span(&self) -> u128 {
        self.last.0 - self.first.0
    }

    /// The fraction of the whole ring this range covers.
    pub fn fraction(&self) -> f64 {
        // span + 1 tokens out of 2^128.
        (self.span() as f64 + 1.0) / 340_282_366_920_938_463_463_374_607_431_768_211_456.0
    }

    /// Joins `next` onto this range when it starts right after this one ends.
    pub fn join(&self, next: &TokenRange) -> Option<TokenRange> {
        (self.last.0.checked_add(1) == Some(next.first.0)).then_some(TokenRange { first: self.first, last: next.last })
    }

    /// Whether `token` lies in one of `ranges`, which must be sorted and disjoint (a binary
    /// search).
    pub fn find(ranges: &[TokenRange], token: Token) -> bool {
        let after = ranges.partition_point(|r| r.last < token);
        ranges.get(after).is_some_and(|r| r.contains(token))
    }
}

impl fmt::Display for TokenRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}..={}]", self.first, self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_md5_big_endian() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(Token::of(b"").0, 0xd41d8cd98f00b204e9800998ecf8427e);
        assert_eq!(alloc::format!("{}", Token::of(b"")), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn ranges_join_only_when_adjacent() {
        let a = TokenRange::new(Token(0), Token(9)).unwrap();
        let b = TokenRange::new(Token(10), Token(19)).unwrap();
        let c = TokenRange::new(Token(21), Token(30)).unwrap();
        assert_eq!(a.join(&b), TokenRange::new(Token(0), Token(19)));
        assert_eq!(a.join(&c), None);
        assert!(TokenRange::new(Token(5), Token(4)).is_none());
        assert!((TokenRange::FULL.fraction() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn find_searches_sorted_ranges() {
        let ranges = [
            TokenRange::new(Token(0), Token(9)).unwrap(),
            TokenRange::new(Token(20), Token(29)).unwrap(),
            TokenRange::new(Token(40), Token(40)).unwrap(),
        ];
        let found: alloc::vec::Vec<u128> = (0..50).filter(|&t| TokenRange::find(&ranges, Token(t))).collect();
        let expected: alloc::vec::Vec<u128> = (0..10).chain(20..30).chain(40..41).collect();
        assert_eq!(found, expected);
        assert!(!TokenRange::find(&[], Token(1)));
    }
}
