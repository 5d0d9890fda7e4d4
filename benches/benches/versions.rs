//! Versions: merging and applying writes on a key with three siblings.

#![allow(missing_docs)] // criterion_group! generates undocumented public functions.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use quickv_core::identity::NodeId;
use quickv_core::store::{ConflictPolicy, StoreName};
use quickv_core::version::{CausalContext, ContextKey, Siblings, Write};

/// Three replicas that each took a concurrent blind write, and the state that has all three.
fn three_siblings() -> (Vec<Siblings>, Siblings) {
    let policy = ConflictPolicy::Siblings;
    let mut replicas = Vec::new();
    for (i, name) in ["node-a", "node-b", "node-c"].into_iter().enumerate() {
        let actor = NodeId::new(name).expect("valid");
        let mut s = Siblings::new();
        s.apply(&actor, &Write::put(vec![i as u8; 1024], CausalContext::empty(), i as u64), policy).expect("applies");
        replicas.push(s);
    }
    let mut all = Siblings::new();
    for r in &replicas {
        all.merge(r, policy);
    }
    assert_eq!(all.versions().len(), 3);
    (replicas, all)
}

fn secret() -> ContextKey {
    ContextKey::new([7; ContextKey::LEN])
}

/// `state` of key `cart:42` as a replica answers it.
fn sealed(state: &Siblings) -> quickv_core::version::SealedState {
    secret().seal(&StoreName::default_store(), b"cart:42", state.clone())
}

fn merge(c: &mut Criterion) {
    let (replicas, all) = three_siblings();
    let policy = ConflictPolicy::Siblings;
    c.bench_function("versions/merge/3_replicas_into_3_siblings", |b| {
        b.iter(|| {
            let mut acc = Siblings::new();
            for r in &replicas {
                acc.merge(black_box(r), policy);
            }
            black_box(acc)
        })
    });
    c.bench_function("versions/apply/put_resolving_3_siblings", |b| {
        let actor = NodeId::new("node-a").expect("valid");
        let write = Write::put(vec![9u8; 1024], sealed(&all).context(), 10);
        b.iter(|| {
            let mut s = all.clone();
            s.apply(&actor, black_box(&write), policy).expect("applies");
            black_box(s)
        })
    });
    // What a replica adds to a read (sealing its state) and to a write (checking the context).
    c.bench_function("versions/seal/3_actor_state", |b| {
        let (secret, store) = (secret(), StoreName::default_store());
        b.iter(|| black_box(secret.seal(&store, black_box(b"cart:42"), black_box(all.clone()))))
    });
    c.bench_function("versions/check/3_actor_context", |b| {
        let (secret, store, context) = (secret(), StoreName::default_store(), sealed(&all).context());
        b.iter(|| black_box(secret.check(&store, black_box(b"cart:42"), black_box(&context))))
    });
    c.bench_function("versions/compare/3_actor_vectors", |b| {
        let (x, y) = (replicas[0].history().clone(), all.history().clone());
        b.iter(|| black_box(black_box(&x).compare(black_box(&y))))
    });
}

criterion_group!(benches, merge);
criterion_main!(benches);
