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

/// Regression (the simulation's seed 5576): the network delivered a mint twice; the copy was
/// minted under the older ring, the replica's ring moved, and the original, routed with the
/// older ring, was answered `StaleRing`. Told that the write was not applied, the coordinator
/// had another replica mint it: one put, two versions. A mint routed with an older ring whose
/// write is applied here is answered with the state; any other is still answered `StaleRing`
/// and changes nothing.
#[test]
fn a_stale_copy_of_a_mint_applied_here_is_answered_with_the_state() {
    let mut h = Harness::new(3);
    let mine = h.nodes[0].view().ring().unwrap().version();
    let older = RingVersion { epoch: mine.epoch - 1, ..mine };
    let name = (StoreName::default_store(), b"cart".to_vec());
    let mint = |h: &mut Harness, stream: u64, ring: RingVersion, id: u64| {
        let write = Write::put(b"apples".to_vec(), CausalContext::empty(), 1).with_id(WriteId(id as u128));
        let body = Request::Mint { store: name.0.clone(), key: name.1.clone(), write, hint_for: None };
        let origin = Origin::peer(PEER_STREAMS + stream * MAX_NODES, certificate("cert-1"));
        h.nodes[0].handle_message(h.now, origin, Message::Routed { id: stream, ring, body });
        h.settle();
        h.answered.iter().rev().find(|(from, _)| *from == 0).cloned().expect("an answer").1
    };
    assert!(matches!(mint(&mut h, 1, mine, 7), Response::State(Some(_))));
    // The same write again, routed with the older ring: its state, with the write once.
    let again = mint(&mut h, 2, older, 7);
    let Response::State(Some(state)) = again else { panic!("{again:?}") };
    assert_eq!(state.siblings.versions().iter().filter(|v| v.write == WriteId(7)).count(), 1);
    // Another write routed with the older ring: refused, nothing stored.
    let other = mint(&mut h, 3, older, 8);
    assert!(matches!(&other, Response::Error(e) if e.kind == ErrorKind::StaleRing), "{other:?}");
    assert!(h.disks[0][&name].siblings.versions().iter().all(|v| v.write != WriteId(8)));
}
