//! Versions: merging and applying writes on a key with three siblings.

#![allow(missing_docs)] // criterion_group! generates undocumented public functions.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use quickv_core::identity::NodeId;
use quickv_core::store::ConflictPolicy;
use quickv_core::version::{CausalContext, Siblings, Write};

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
        let write = Write::put(vec![9u8; 1024], all.context(), 10);
        b.iter(|| {
            let mut s = all.clone();
            s.apply(&actor, black_box(&write), policy).expect("applies");
            black_box(s)
        })
    });
    c.bench_function("versions/compare/3_actor_vectors", |b| {
        let (x, y) = (replicas[0].history().clone(), all.history().clone());
        b.iter(|| black_box(black_box(&x).compare(black_box(&y))))
    });
}

criterion_group!(benches, merge);
criterion_main!(benches);
