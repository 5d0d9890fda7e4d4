//! Hinted handoff: what a fallback keeps after handing a write back.

use super::*;

/// Regression (seed 42 of the simulation's defaults, while copies were dropped after every
/// handoff): a fallback that minted a hinted write dropped its copy once the primary took it;
/// its next write of the key, minted above its counter floor, claimed to have seen the first
/// one (a version vector covers every dot below its counter) and superseded it at the primary,
/// losing an acknowledged write. A fallback that minted in its copy keeps it; both writes reach
/// the primary.
#[test]
fn a_fallback_that_minted_a_hinted_write_keeps_its_copy_and_loses_nothing() {
    let mut h = Harness::new(4);
    let (store, key) = sloppy_key_of_n3(&mut h);
    let n3 = h.nodes[3].id().clone();
    let ring = h.nodes[0].view().ring().unwrap().clone();
    let fallback = ring.preference_list(crate::token::Token::of(&key), 3, 1).fallbacks()[0].clone();
    let f = h.nodes.iter().position(|n| *n.id() == fallback).unwrap();
    let mint_at_fallback = |h: &mut Harness, id: u64, value: &[u8]| {
        let write = Write::put(value.to_vec(), CausalContext::empty(), id);
        let body = Request::Mint { store: store.clone(), key: key.clone(), write, hint_for: Some(n3.clone()) };
        let from = Origin::peer(PEER_STREAMS + id * MAX_NODES, certificate("cert-0"));
        h.nodes[f].handle_message(h.now, from, Message::Request { id, body });
        h.settle();
    };
    let record = (store.clone(), key.clone());
    for (round, value) in [(1, &b"first"[..]), (2, b"second")] {
        h.down[3] = true;
        h.run();
        mint_at_fallback(&mut h, round, value);
        assert_eq!(h.hint_disks[f].len(), 1, "the fallback holds a hint for n3");
        h.down[3] = false;
        h.run();
        assert!(h.hint_disks[f].is_empty(), "handed back");
    }
    let mut held = values(&h.disks[3][&record].siblings);
    held.sort();
    assert_eq!(held, vec![b"first".to_vec(), b"second".to_vec()], "n3 holds both acknowledged writes");
    assert!(h.disks[f].contains_key(&record), "the fallback minted in its copy: it keeps it");
    assert_eq!(h.nodes[f].stats().copies_dropped, 0);
}
