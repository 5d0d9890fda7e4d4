//! Merkle trees: diffing two trees of 100,000 keys that differ in 10.

#![allow(missing_docs)] // criterion_group! generates undocumented public functions.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use quickv_core::merkle::MerkleTree;
use quickv_core::token::{Token, TokenRange};

fn trees(depth: u8) -> (MerkleTree, MerkleTree) {
    let mut a = MerkleTree::new(TokenRange::FULL, depth).expect("valid depth");
    let mut b = a.clone();
    for i in 0u32..100_000 {
        let key = i.to_le_bytes();
        let token = Token::of(&key);
        a.insert(token, MerkleTree::item_digest(&key, 1)).expect("in range");
        let version = if i % 10_000 == 0 { 2 } else { 1 };
        b.insert(token, MerkleTree::item_digest(&key, version)).expect("in range");
    }
    (a, b)
}

fn diff(c: &mut Criterion) {
    for depth in [10u8, 16] {
        let (a, b) = trees(depth);
        assert_eq!(a.diff(&b).expect("same shape").len(), 10);
        c.bench_function(&format!("merkle/diff/100k_keys_10_differ/depth_{depth}"), |bench| {
            bench.iter(|| black_box(black_box(&a).diff(black_box(&b))))
        });
    }
    let (mut a, _) = trees(16);
    c.bench_function("merkle/insert/depth_16", |bench| {
        let mut i = 0u64;
        bench.iter(|| {
            i += 1;
            a.insert(Token(u128::from(i) << 64), black_box(i)).expect("in range")
        })
    });
}

criterion_group!(benches, diff);
criterion_main!(benches);
