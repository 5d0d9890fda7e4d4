//! Mints a node coordinates itself: the minted state goes to the other replicas while the
//! node's own store is under way (see `Node::release_mint`), and a store that then fails keeps
//! the dot from ever being minted again.

use super::*;

fn put_of(key: &[u8], value: &[u8]) -> Request {
    let write = Write::put(value.to_vec(), CausalContext::empty(), 1);
    Request::CoordinatePut { store: StoreName::default_store(), key: key.to_vec(), write, minter: None }
}

/// Starts a put coordinated (and minted) by node 0 and runs its mint up to the store, which
/// is left under way; returns the store's id and the requests node 0 sent meanwhile.
fn mint_up_to_the_store(h: &mut Harness, stream: u64, key: &[u8], value: &[u8]) -> (IoId, Vec<Transmit>) {
    h.nodes[0].handle_message(h.now, Origin::caller(stream), Message::Request { id: 1, body: put_of(key, value) });
    let (load, io) = h.nodes[0].poll_io().expect("the mint's load");
    assert!(matches!(io, Io::Load { .. }), "{io:?}");
    let current = h.disks[0].get(&(StoreName::default_store(), key.to_vec())).cloned();
    h.nodes[0].handle_io(h.now, load, Ok(IoOutput::Loaded(current)));
    let (store, io) = h.nodes[0].poll_io().expect("the mint's store");
    assert!(matches!(io, Io::Store { .. }), "{io:?}");
    (store, core::iter::from_fn(|| h.nodes[0].poll_transmit()).collect())
}

fn replicates(sent: &[Transmit]) -> usize {
    let replicate = |t: &&Transmit| {
        matches!(
            &t.message,
            Message::Request { body: Request::Replicate { .. }, .. }
                | Message::Routed { body: Request::Replicate { .. }, .. }
        )
    };
    sent.iter().filter(replicate).count()
}

/// A node coordinating a put of a key it holds mints it itself (no request to another primary)
/// and sends the minted state to the two other replicas before its own store has finished; W
/// = 2 is met by them, and its own acknowledgement comes with its store.
#[test]
fn a_node_mints_the_puts_it_coordinates_and_replicates_while_its_store_is_under_way() {
    let mut h = Harness::new(3);
    let key = h.keys_of(0, 1).remove(0);
    let (store, sent) = mint_up_to_the_store(&mut h, 7, &key, b"apples");
    assert_eq!(replicates(&sent), 2, "the state goes out before the store finishes: {sent:?}");
    assert!(!sent.iter().any(|t| matches!(&t.message, Message::Request { body: Request::Mint { .. }, .. })));
    for t in sent {
        h.deliver(0, t);
    }
    h.settle();
    let answer = h.answers.remove(&7).expect("W = 2 met by the two other replicas");
    assert_eq!(values(&state(answer)), vec![b"apples".to_vec()]);
    let name = (StoreName::default_store(), key.clone());
    assert!(h.disks[1].contains_key(&name) && h.disks[2].contains_key(&name));
    h.nodes[0].handle_io(h.now, store, Ok(IoOutput::Done));
    h.settle();
    assert!(h.nodes[0].coordinations.is_empty(), "the coordination ends with the minter's acknowledgement");
}

/// The other replicas hold a dot whose store failed at its minter: that node mints no write of
/// the key again in this incarnation (another replica mints the next one), so no dot stands
/// for two writes, and both writes are kept.
#[test]
fn a_released_mint_whose_store_fails_is_never_minted_again() {
    let mut h = Harness::new(3);
    let key = h.keys_of(0, 1).remove(0);
    let (store, sent) = mint_up_to_the_store(&mut h, 7, &key, b"apples");
    for t in sent {
        h.deliver(0, t);
    }
    h.settle();
    assert!(matches!(h.answers.remove(&7), Some(Response::State(Some(_)))));
    h.nodes[0].handle_io(h.now, store, Err(IoError("disk on fire".into())));
    assert!(core::iter::from_fn(|| h.nodes[0].poll_event()).any(|e| matches!(e, Event::StorageFailed { .. })));
    let name = (StoreName::default_store(), key.clone());
    assert!(!h.disks[0].contains_key(&name), "the store failed");
    // The next blind write of the key, coordinated by node 0 again: it does not mint it.
    let answer = h.ask(0, 8, put_of(&key, b"pears"));
    assert!(matches!(answer, Response::State(Some(_))), "{answer:?}");
    let minted_by_0 =
        h.sent.iter().any(|(from, to, body)| *from == 0 && *to != 0 && matches!(body, Request::Mint { .. }));
    assert!(minted_by_0, "node 0 asked another primary to mint");
    for disk in [1, 2] {
        let mut held = values(&h.disks[disk][&name].siblings);
        held.sort();
        assert_eq!(held, vec![b"apples".to_vec(), b"pears".to_vec()], "node {disk} keeps both writes");
    }
}

/// A node that crashed with a released mint's store under way may have lost its own copy while
/// the other replicas hold the write. The caller heard nothing and sends the write again to
/// that node (as the smart client does, pinned to it). Restarted in a new incarnation with
/// `lost_records` set (the server sets it after every stop that was not clean), the node
/// answers indeterminate instead of minting the write a second time.
#[test]
fn a_node_restarted_after_losing_a_released_mint_does_not_mint_the_resent_write_again() {
    let mut h = Harness::new(3);
    let key = h.keys_of(0, 1).remove(0);
    let me = h.nodes[0].id().clone();
    let write = Write::put(b"apples".to_vec(), CausalContext::empty(), 1).with_id(WriteId(42));
    let pinned = |write: Write| Request::CoordinatePut {
        store: StoreName::default_store(),
        key: key.clone(),
        write,
        minter: Some(me.clone()),
    };
    h.nodes[0].handle_message(h.now, Origin::caller(7), Message::Request { id: 1, body: pinned(write.clone()) });
    let (load, _) = h.nodes[0].poll_io().expect("the mint's load");
    h.nodes[0].handle_io(h.now, load, Ok(IoOutput::Loaded(None)));
    let (_store, io) = h.nodes[0].poll_io().expect("the mint's store");
    assert!(matches!(io, Io::Store { .. }));
    let sent: Vec<Transmit> = core::iter::from_fn(|| h.nodes[0].poll_transmit()).collect();
    assert_eq!(replicates(&sent), 2);
    for t in sent {
        h.deliver(0, t);
    }
    // The replicas store it; node 0 crashes before its own store lands, and the caller's
    // answer is lost with it.
    h.settle();
    let name = (StoreName::default_store(), key.clone());
    assert!(h.disks[1].contains_key(&name) && h.disks[2].contains_key(&name));
    assert!(!h.disks[0].contains_key(&name));
    let mut config = NodeConfig::new(h.nodes[0].info().clone(), secret());
    config.incarnation = 2;
    config.lost_records = true;
    h.nodes[0] = Node::new(config, h.nodes[0].view().clone(), h.now).unwrap();
    h.answers.clear();
    let answer = h.ask_now(0, 8, pinned(write.resend()));
    assert!(matches!(&answer, Response::Error(e) if e.kind == ErrorKind::Indeterminate), "{answer:?}");
    for disk in [0, 1, 2] {
        let versions = h.disks[disk].get(&name).map_or(0, |r| r.siblings.values().count());
        assert!(versions <= 1, "node {disk} holds {versions} versions of one write");
    }
}
