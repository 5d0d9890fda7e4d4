//! Ring: preference-list lookup on 1,000-node and 3-node rings, and rebalancing after a join.

#![allow(missing_docs)] // criterion_group! generates undocumented public functions.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use quickv_benches::membership;
use quickv_core::membership::NodeInfo;
use quickv_core::ring::{DEFAULT_PARTITION_BITS, Ring};
use quickv_core::token::Token;

fn preference_list(c: &mut Criterion) {
    let ring = Ring::build(&membership(1_000, 5), DEFAULT_PARTITION_BITS).expect("ring builds");
    let tokens: Vec<Token> = (0u32..1024).map(|i| Token::of(&i.to_le_bytes())).collect();
    let mut i = 0;
    c.bench_function("ring/preference_list/1000_nodes/n3+3_fallbacks", |b| {
        b.iter(|| {
            i = (i + 1) % tokens.len();
            black_box(ring.preference_list(black_box(tokens[i]), 3, 3))
        })
    });
    // A small cluster asked for more fallbacks than it has nodes: must not walk every partition.
    let small = Ring::build(&membership(3, 3), DEFAULT_PARTITION_BITS).expect("ring builds");
    c.bench_function("ring/preference_list/3_nodes/n3+3_fallbacks", |b| {
        b.iter(|| {
            i = (i + 1) % tokens.len();
            black_box(small.preference_list(black_box(tokens[i]), 3, 3))
        })
    });
    c.bench_function("ring/key_token/16_byte_key", |b| b.iter(|| Token::of(black_box(b"cart:1234567890a"))));
}

fn rebalance(c: &mut Criterion) {
    let mut m = membership(1_000, 5);
    let ring = Ring::build(&m, DEFAULT_PARTITION_BITS).expect("ring builds");
    m.upsert(NodeInfo::new("node-new", "127.0.0.1:7100", "z0", 2).expect("valid")).expect("a new id");
    let mut group = c.benchmark_group("ring/rebalance");
    group.sample_size(20);
    group.bench_function("1000_nodes_plus_one/65536_partitions", |b| b.iter(|| black_box(ring.next(&m))));
    group.finish();
}

criterion_group!(benches, preference_list, rebalance);
criterion_main!(benches);
