//! Issue 8, 3.4: a damaged record is reported, served by the other replicas and rebuilt from
//! them, and never minted on again by the incarnation that found it.

use super::*;
use crate::token::Token;

fn record() -> (StoreName, Vec<u8>) {
    (StoreName::default_store(), b"cart".to_vec())
}

fn mint(h: &mut Harness, node: usize, id: u64, value: &[u8]) -> Response {
    let (store, key) = record();
    let write = Write::put(value.to_vec(), CausalContext::empty(), id);
    let body = Request::Mint { store, key, write, hint_for: None };
    let stream = PEER_STREAMS + id * MAX_NODES;
    h.nodes[node].handle_message(h.now, Origin::peer(stream, certificate("cert-0")), Message::Request { id, body });
    h.settle();
    let (_, answer) = h.answered.iter().rev().find(|(from, _)| *from == node).cloned().expect("an answer");
    answer
}

/// Puts "apples" as `key` of the default store through n0.
fn put_apples(h: &mut Harness, id: u64, key: &[u8]) {
    let put = Request::CoordinatePut {
        store: StoreName::default_store(),
        key: key.to_vec(),
        write: Write::put(b"apples".to_vec(), CausalContext::empty(), id),
        minter: None,
    };
    assert!(matches!(h.ask_now(0, id, put), Response::State(Some(_))));
}

#[test]
fn a_damaged_record_is_served_elsewhere_rebuilt_and_never_minted_again_by_its_incarnation() {
    let mut h = Harness::new(3);
    let (store, key) = record();
    put_apples(&mut h, 1, &key);
    h.damaged[2].insert(record());

    // A replica read at n2 fails (it never answers "nothing here"), and n2 says why.
    let read = h.ask_now(2, 2, Request::Get { store: store.clone(), key: key.clone() });
    assert!(
        matches!(read, Response::Error(ref e) if e.kind == ErrorKind::Internal && e.message.contains("damaged")),
        "{read:?}"
    );
    let events: Vec<Event> = core::iter::from_fn(|| h.nodes[2].poll_event()).collect();
    assert!(events.iter().any(|e| matches!(e, Event::DamagedRecord { key: k, .. } if *k == key)), "{events:?}");
    assert_eq!(h.nodes[2].stats().damaged_records, 1);
    // n2 refuses to mint the key, as a replica that did not apply the write.
    let refused = mint(&mut h, 2, 3, b"pears");
    assert!(matches!(refused, Response::Error(ref e) if e.kind == ErrorKind::Unavailable), "{refused:?}");
    // The cluster serves the key from the other replicas.
    let read = h.ask_now(0, 4, Request::CoordinateGet { store: store.clone(), key: key.clone() });
    assert_eq!(values(&state(read)), vec![b"apples".to_vec()]);

    // Anti-entropy (or the read's repair) rebuilds n2's record, with no read at n2.
    h.run();
    assert!(h.damaged[2].is_empty(), "the damaged record was replaced");
    assert_eq!(h.disks[2][&record()].siblings, h.disks[0][&record()].siblings);
    assert!(h.nodes[2].stats().damaged_repaired >= 1);
    // Still no mint of that key in this incarnation: the lost record may have held its dots.
    let refused = mint(&mut h, 2, 5, b"pears");
    assert!(matches!(refused, Response::Error(ref e) if e.kind == ErrorKind::Unavailable), "{refused:?}");

    // Restarted in a new incarnation, n2 mints it again.
    let info = h.nodes[2].info().clone();
    let mut config = NodeConfig::new(info, secret());
    config.seeds = vec![String::from("addr-0")];
    config.incarnation = 2;
    let view = h.nodes[2].view().clone();
    h.nodes[2] = Node::new(config, view, h.now).unwrap();
    h.run();
    let minted = mint(&mut h, 2, 6, b"pears");
    assert!(matches!(minted, Response::State(Some(_))), "{minted:?}");
}

/// A block of n2's table that no scan can read (which keys it held is unknown): its scrub
/// reports the range, the Merkle leaves over it are disturbed, and anti-entropy brings the
/// other replicas' copies in, with no read of those keys anywhere.
#[test]
fn a_range_no_scan_can_read_is_rebuilt_by_anti_entropy() {
    let mut h = Harness::tuned(3, |c| c.scrub_interval = Duration::from_secs(5));
    let store = StoreName::default_store();
    for i in 0..20u64 {
        let put = Request::CoordinatePut {
            store: store.clone(),
            key: format!("k{i}").into_bytes(),
            write: Write::put(b"v".to_vec(), CausalContext::empty(), i),
            minter: None,
        };
        assert!(matches!(h.ask_now(0, 100 + i, put), Response::State(Some(_))));
    }
    h.run();
    // Three records n2 holds, in one unreadable block.
    let lost: Vec<(StoreName, Vec<u8>)> = h.disks[2].keys().filter(|(s, _)| *s == store).take(3).cloned().collect();
    assert_eq!(lost.len(), 3);
    for key in &lost {
        h.damaged[2].insert(key.clone());
        h.unreadable[2].insert(key.clone());
    }
    h.sent.clear();
    for _ in 0..4 {
        h.run();
    }
    assert!(h.nodes[2].stats().damaged_ranges >= 1, "the scrub reported the range");
    assert!(h.damaged[2].is_empty(), "every record of the block was replaced");
    for key in &lost {
        assert_eq!(h.disks[2][key].siblings, h.disks[0][key].siblings);
    }
    let read = |r: &Request| matches!(r, Request::CoordinateGet { .. });
    assert!(!h.sent.iter().any(|(_, _, r)| read(r)), "no caller read the keys");
}

/// Issue 9, 5.1: a damaged copy of a key this node is no replica of (a ring change took the key
/// and the shed has not passed yet), holding no hint of it, is dropped, not rebuilt from the
/// replicas: a rebuilt copy would stay on a node that does not own it (found by the simulation
/// with `elastic`, seed 34). The replicas keep theirs, and a damaged copy of a key the node does
/// own is still rebuilt.
#[test]
fn a_damaged_copy_of_a_key_this_node_lost_is_dropped_not_rebuilt() {
    let mut h = Harness::tuned(4, |c| c.scrub_interval = Duration::from_secs(5));
    let store = StoreName::default_store();
    let ring = h.nodes[0].view().ring().unwrap().clone();
    let n3 = h.nodes[3].id().clone();
    let owns = |key: &[u8]| ring.preference_list(Token::of(key), 3, 0).is_primary(&n3);
    let lost = (0u64..).map(|i| format!("lost{i}").into_bytes()).find(|k| !owns(k)).unwrap();
    let kept = (0u64..).map(|i| format!("kept{i}").into_bytes()).find(|k| owns(k)).unwrap();
    put_apples(&mut h, 1, &lost);
    put_apples(&mut h, 2, &kept);
    h.run();
    let lost = (store.clone(), lost);
    let kept = (store.clone(), kept);
    // n3's copy of a key it does not own, as a ring change leaves it, then damaged with the
    // other.
    let copy = h.disks.iter().find_map(|d| d.get(&lost).cloned()).unwrap();
    h.disks[3].insert(lost.clone(), copy.clone());
    h.damaged[3].insert(lost.clone());
    h.damaged[3].insert(kept.clone());

    for _ in 0..3 {
        h.run();
    }
    assert!(h.nodes[3].stats().damaged_records >= 2, "the scrub found both");
    assert!(!h.disks[3].contains_key(&lost), "the copy of the key n3 lost was dropped");
    assert!(h.damaged[3].is_empty());
    assert_eq!(h.disks[3][&kept].siblings, h.disks[0].get(&kept).or(h.disks[1].get(&kept)).unwrap().siblings);
    let holders = h.disks.iter().filter(|d| d.get(&lost).is_some_and(|r| r.siblings == copy.siblings)).count();
    assert_eq!(holders, 3, "the replicas keep theirs");
}

/// Issue 9, 5.1: a replica write that lands on a node that is no replica of the key and holds
/// no hint of it (a transfer, comparison, rebuild or repair planned under the previous ring,
/// arriving after the shed passed) is acknowledged, stored, then shed in turn: the copy does not
/// stay (found by the simulation with `elastic`, seed 1313).
#[test]
fn a_late_write_to_a_node_that_lost_the_key_is_shed() {
    let mut h = Harness::new(4);
    let ring = h.nodes[0].view().ring().unwrap().clone();
    let n3 = h.nodes[3].id().clone();
    let key = (0u64..)
        .map(|i| format!("late{i}").into_bytes())
        .find(|k| !ring.preference_list(Token::of(k), 3, 0).is_primary(&n3))
        .unwrap();
    let store = StoreName::default_store();
    put_apples(&mut h, 1, &key);
    h.run();
    let name = (store.clone(), key.clone());
    let siblings = h.disks.iter().find_map(|d| d.get(&name)).unwrap().siblings.clone();
    let body = Request::Replicate { store, key, siblings, hint_for: None };
    h.nodes[3].handle_message(
        h.now,
        Origin::peer(PEER_STREAMS + MAX_NODES, certificate("cert-0")),
        Message::Request { id: 9, body },
    );
    h.settle();
    let (_, answer) = h.answered.iter().rev().find(|(from, _)| *from == 3).cloned().expect("an answer");
    assert_eq!(answer, Response::Ack);
    assert!(!h.disks[3].contains_key(&name), "n3 shed the copy");
    assert_eq!(h.disks.iter().filter(|d| d.contains_key(&name)).count(), 3, "the replicas keep theirs");
    assert!(h.nodes[3].stats().records_shed >= 1);
}
