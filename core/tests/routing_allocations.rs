//! Routing a request allocates nothing (issue 10, 2): a key's token, its preference list on a
//! 1,000-node ring, and the smart client's and the node's steady-state routing
//! (`RoutingTable::preferences`, `ClusterView::write_plan`) are counted by an allocator that
//! counts the allocations of the thread under test.

use std::alloc::System;

use quickv_core::cluster::ClusterView;
use quickv_core::identity::NodeId;
use quickv_core::membership::{Membership, NodeInfo};
use quickv_core::ring::{DEFAULT_PARTITION_BITS, INLINE_NODES, Ring};
use quickv_core::routing::RoutingTable;
use quickv_core::store::{StoreConfig, StoreName};
use quickv_core::token::Token;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// How many allocations `f` made (the process has this one thread).
fn allocations(f: impl FnOnce()) -> usize {
    let region = Region::new(ALLOCATOR);
    f();
    let change = region.change();
    change.allocations + change.reallocations
}

fn membership(nodes: usize, zones: usize) -> Membership {
    let mut m = Membership::new();
    for i in 0..nodes {
        let info =
            NodeInfo::new(&format!("node-{i:05}"), "127.0.0.1:7100", &format!("z{}", i % zones), 1 + i as u32 % 3)
                .expect("valid names");
        m.upsert(info).expect("no certificates, no conflicts");
    }
    m
}

fn keys() -> Vec<Vec<u8>> {
    (0u32..2_000).map(|i| format!("cart:{i}").into_bytes()).collect()
}

fn a_preference_list_on_a_large_ring_allocates_nothing() {
    for (nodes, zones) in [(1_000, 5), (1_000, 1), (3, 3), (3, 1)] {
        let ring = Ring::build(&membership(nodes, zones), DEFAULT_PARTITION_BITS).expect("ring builds");
        let keys = keys();
        let mut checked = 0;
        let count = allocations(|| {
            for key in &keys {
                let prefs = ring.preference_list(Token::of(key), 3, INLINE_NODES - 3);
                checked += prefs.primaries().len() + prefs.fallbacks().len();
            }
        });
        assert_eq!(count, 0, "{nodes} nodes in {zones} zones: routing {} keys allocated", keys.len());
        assert_eq!(checked, keys.len() * INLINE_NODES.min(nodes), "every list is whole");
    }
}

fn steady_state_routing_allocates_nothing() {
    let mut view = ClusterView::new(DEFAULT_PARTITION_BITS);
    for i in 0..30 {
        let info = NodeInfo::new(&format!("n{i}"), "127.0.0.1:7101", &format!("z{}", i % 3), 1).expect("valid");
        view.upsert_node(info).expect("no conflicts");
    }
    let config = StoreConfig::quorum();
    view.create_store(StoreName::default_store(), config).expect("created");
    view.advance_ring(&NodeId::new("n0").expect("valid")).expect("the ring moves");
    let table = RoutingTable::new(view.clone());
    let keys = keys();
    let mut routed = 0;
    let count = allocations(|| {
        for key in &keys {
            let token = Token::of(key);
            let plan = view.write_plan(token, &config, 3).expect("a ring");
            let reads = table.preferences(key, &config, 3).expect("a ring");
            routed += plan.prefs.primaries().len() + reads.primaries().len();
        }
    });
    assert_eq!(count, 0, "routing {} keys (writes and reads) allocated", keys.len());
    assert_eq!(routed, keys.len() * 2 * config.n());
}

fn main() {
    // Listed as tests for runners that ask (`cargo nextest`, `cargo test -- --list`).
    if std::env::args().any(|a| a == "--list") {
        println!("a_preference_list_on_a_large_ring_allocates_nothing: test");
        println!("steady_state_routing_allocates_nothing: test");
        return;
    }
    a_preference_list_on_a_large_ring_allocates_nothing();
    println!("a_preference_list_on_a_large_ring_allocates_nothing ... ok");
    steady_state_routing_allocates_nothing();
    println!("steady_state_routing_allocates_nothing ... ok");
}
