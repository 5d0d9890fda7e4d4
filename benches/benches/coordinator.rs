//! A put coordinator's whole run, sans I/O: from the write to the reply and the end, N=3 W=2,
//! every replica answering (what a node or the smart client does per put, outside the network).

#![allow(missing_docs)] // criterion_group! generates undocumented public functions.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use quickv_core::coordinator::{Action, Coordinator, PutCoordinator, PutRequest};
use quickv_core::identity::NodeId;
use quickv_core::ring::PreferenceList;
use quickv_core::store::{ConflictPolicy, StoreConfig, StoreName};
use quickv_core::token::Token;
use quickv_core::version::{CausalContext, ContextKey, Siblings, Write};

fn put(c: &mut Criterion) {
    let nodes: Vec<NodeId> = ["node-a", "node-b", "node-c"].map(|n| NodeId::new(n).expect("valid")).to_vec();
    let prefs = PreferenceList::from_parts(Token::of(b"bench:1"), nodes, Vec::new());
    let config = StoreConfig::quorum();
    let write = Write::put(vec![0x5a; 1024], CausalContext::empty(), 1);
    let key = ContextKey::new([7; ContextKey::LEN]);
    c.bench_function("coordinator/put/n3_w2_all_answer", |b| {
        b.iter(|| {
            let mut m =
                PutCoordinator::new(&prefs, &config, &[], write.clone(), Duration::from_secs(2), Duration::ZERO);
            let mut replied = false;
            while let Some(action) = m.poll_action() {
                match action {
                    Action::Send { to, request: PutRequest::Mint { write, .. } } => {
                        let mut state = Siblings::new();
                        state.apply(&to, &write, ConflictPolicy::Siblings).expect("applies");
                        let sealed = key.seal(&StoreName::default_store(), b"bench:1", state);
                        m.handle_reply(Duration::ZERO, &to, Ok(Some(sealed)));
                    }
                    Action::Send { to, request: PutRequest::Replicate { .. } } => {
                        m.handle_reply(Duration::ZERO, &to, Ok(None))
                    }
                    Action::Reply(outcome) => replied = black_box(outcome).is_ok(),
                    _ => {}
                }
            }
            assert!(replied && m.is_finished());
        })
    });
}

criterion_group!(benches, put);
criterion_main!(benches);
