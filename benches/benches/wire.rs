//! Wire frames on the request path: encoding and decoding a put of a 1 KiB value (what a
//! coordinator sends its replicas) and the state a replica answers with.

#![allow(missing_docs)] // criterion_group! generates undocumented public functions.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use quickv_core::identity::NodeId;
use quickv_core::ring::RingVersion;
use quickv_core::store::{ConflictPolicy, StoreName};
use quickv_core::version::{CausalContext, ContextKey, Siblings, Write};
use quickv_core::wire::{self, Message, Request, Response};

fn frames(c: &mut Criterion) {
    let write = Write::put(vec![0x5a; 1024], CausalContext::empty(), 1_700_000_000_000);
    let put = Message::Routed {
        id: 42,
        ring: RingVersion { epoch: 5, digest: 0x0123_4567_89ab_cdef },
        body: Request::Mint {
            store: StoreName::default_store(),
            key: b"bench:12345".to_vec(),
            write: write.clone(),
            hint_for: None,
        },
    };
    let mut state = Siblings::new();
    state.apply(&NodeId::new("node-a").expect("valid"), &write, ConflictPolicy::Siblings).expect("applies");
    let sealed = ContextKey::new([7; ContextKey::LEN]).seal(&StoreName::default_store(), b"bench:12345", state);
    let answer = Message::Response { id: 42, body: Response::State(Some(sealed)) };
    let (put_bytes, answer_bytes) = (wire::encode(&put), wire::encode(&answer));
    c.bench_function("wire/encode/mint_1KiB", |b| b.iter(|| wire::encode(black_box(&put))));
    c.bench_function("wire/decode/mint_1KiB", |b| b.iter(|| wire::decode(black_box(&put_bytes))));
    c.bench_function("wire/encode/state_1KiB", |b| b.iter(|| wire::encode(black_box(&answer))));
    c.bench_function("wire/decode/state_1KiB", |b| b.iter(|| wire::decode(black_box(&answer_bytes))));
}

criterion_group!(benches, frames);
criterion_main!(benches);
