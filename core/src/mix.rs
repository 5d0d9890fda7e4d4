//! Small deterministic mixing functions shared by the ring, the Merkle tree, the simulation's
//! and the load generator's random numbers.

/// SplitMix64's step: `x` plus the golden-ratio increment, then its finaliser (a bijective,
/// well-distributed 64-bit mix). A generator whose state advances by that increment returns
/// `mix64(state)` before each advance.
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Order-sensitive combination of two digests.
pub(crate) fn combine(left: u64, right: u64) -> u64 {
    mix64(left ^ mix64(right).rotate_left(17))
}
