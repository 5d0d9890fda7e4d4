//! postcard encoding of quickv's own types: it cannot fail, and its type says so.
//!
//! postcard's serializer into a `Vec` fails only on serde errors quickv's types never raise:
//! sequences of unknown length and custom `Serialize` errors. Every type encoded with
//! [`to_vec`] derives `Serialize` over plain fields, `Vec`s, arrays, options and `BTreeMap`s,
//! whose lengths are known. So [`to_vec`] returns the bytes, not a `Result`; should a type ever
//! break that rule, encoding it panics with the reason instead of sending or storing an empty
//! body that would read as another message (what `unwrap_or_default` did).

use alloc::vec::Vec;

use serde::Serialize;

/// The postcard encoding of `value`, a quickv type (see the module docs).
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    match postcard::to_allocvec(value) {
        Ok(bytes) => bytes,
        Err(e) => panic!("a quickv type failed to encode ({e}): its Serialize must not fail"),
    }
}

#[cfg(test)]
mod tests {
    use alloc::collections::BTreeMap;

    #[test]
    fn encodes_as_postcard_does() {
        let value: BTreeMap<u8, alloc::vec::Vec<u32>> = [(1, alloc::vec![2, 300])].into_iter().collect();
        assert_eq!(super::to_vec(&value), postcard::to_allocvec(&value).unwrap());
    }
}
