//! Requests while a ring change spreads (issue 9, 2.1).

use super::*;

/// A node that has not heard of a ring change yet coordinates a put: the replicas, which have,
/// answer its replica requests `StaleRing`. It catches up and runs the put again with the
/// change's plan (a retry at the replica that minted it), and the caller gets its write
/// acknowledged, not "unavailable" (it failed before: the StaleRing answers counted as
/// unavailable replicas and nothing ran the request again).
#[test]
fn a_node_behind_a_ring_change_runs_the_request_again_with_the_new_ring() {
    let mut h = Harness::new(3);
    // n2 misses the change: a fourth node joins while it is away, and the change stays under
    // way (n2 is a current replica of what n3 gains, so n3 waits for it).
    h.down[2] = true;
    let info = NodeInfo::new("n3", "addr-3", "z3", 1).unwrap().with_certificate(certificate("cert-3"));
    h.add(info);
    for _ in 0..100 {
        h.tick();
        if h.nodes[0].view().transition().is_some() && h.nodes[1].view().transition().is_some() {
            break;
        }
    }
    let changed = h.nodes[0].view().routing_version();
    assert!(h.nodes[0].view().transition().is_some(), "a change under way");
    assert_ne!(h.nodes[2].view().routing_version(), changed, "n2 has not heard of it");

    h.down[2] = false;
    let put = Request::CoordinatePut {
        store: StoreName::default_store(),
        key: b"cart".to_vec(),
        write: Write::put(b"apples".to_vec(), CausalContext::empty(), 1),
        minter: None,
    };
    let answer = h.ask_now(2, 1, put);
    assert!(matches!(answer, Response::State(Some(_))), "{answer:?}");
    assert_eq!(h.nodes[2].view().routing_version(), changed, "n2 caught up");
    assert_eq!(h.nodes[2].stats().coordinations_rerun, 1);
    let get = Request::CoordinateGet { store: StoreName::default_store(), key: b"cart".to_vec() };
    assert_eq!(values(&state(h.ask_now(0, 2, get))), vec![b"apples".to_vec()]);
}
