//! # quickv-benches
//!
//! criterion micro-benchmarks of the core (`cargo bench -p quickv-benches`), one file per area in
//! `benches/`; the cluster load generator joins them with the node. This library holds the
//! fixtures the benchmarks share.

use quickv_core::membership::{Membership, NodeInfo};

/// A membership of `nodes` nodes spread over `zones` zones, capacities cycling through 1, 2, 4.
pub fn membership(nodes: usize, zones: usize) -> Membership {
    let mut m = Membership::new();
    for i in 0..nodes {
        let info =
            NodeInfo::new(&format!("node-{i:05}"), "127.0.0.1:7100", &format!("z{}", i % zones), [1, 2, 4][i % 3])
                .expect("generated names are valid");
        m.upsert(info).expect("entries without certificates never conflict");
    }
    m
}
