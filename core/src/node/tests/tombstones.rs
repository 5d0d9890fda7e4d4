//! Issue 8, 3.3: tombstones are collected only once every node of the key holds them, and a
//! delete never comes back.

use super::*;
use crate::store::ConflictPolicy;

const GRACE: Duration = Duration::from_secs(3);

/// A 3-node harness whose nodes collect tombstones after [`GRACE`] (instead of 10 minutes).
fn harness() -> Harness {
    let mut h = Harness::new(3);
    for node in &mut h.nodes {
        node.config.tombstone_grace = GRACE;
    }
    h
}

fn put(key: &[u8], value: &[u8], context: CausalContext) -> Request {
    let write = Write::put(value.to_vec(), context, 1);
    Request::CoordinatePut { store: StoreName::default_store(), key: key.to_vec(), write, minter: None }
}

fn delete(key: &[u8], context: CausalContext) -> Request {
    let write = Write::delete(context, 2);
    Request::CoordinatePut { store: StoreName::default_store(), key: key.to_vec(), write, minter: None }
}

fn get(key: &[u8]) -> Request {
    Request::CoordinateGet { store: StoreName::default_store(), key: key.to_vec() }
}

fn record(key: &[u8]) -> (StoreName, Vec<u8>) {
    (StoreName::default_store(), key.to_vec())
}

/// What each node stores under `key`.
fn held(h: &Harness, key: &[u8]) -> Vec<Option<Siblings>> {
    h.disks.iter().map(|d| d.get(&record(key)).map(|r| r.siblings.clone())).collect()
}

/// Whether a coordinated read found nothing.
fn absent(read: Response) -> bool {
    match read {
        Response::State(None) => true,
        Response::State(Some(state)) => state.siblings.values().next().is_none(),
        _ => false,
    }
}

fn collected(h: &Harness) -> u64 {
    h.nodes.iter().map(|n| n.stats().tombstones_collected).sum()
}

/// A key written and then deleted through its context: every node holds the tombstone, and
/// after two checks a grace apart every node's record is gone; the key reads as absent.
#[test]
fn a_tombstone_every_node_holds_is_collected_everywhere() {
    let mut h = harness();
    let Response::State(Some(written)) = h.ask(0, 1, put(b"cart", b"apples", CausalContext::empty())) else { panic!() };
    assert!(matches!(h.ask_now(1, 2, delete(b"cart", written.context())), Response::State(Some(_))));
    // Right after the delete, every node holds the tombstone.
    for state in held(&h, b"cart") {
        assert!(state.is_some_and(|s| s.is_tombstone()));
    }
    h.run();
    h.run();
    assert_eq!(held(&h, b"cart"), vec![None, None, None], "every node removed the record");
    assert_eq!(collected(&h), 3);
    assert_eq!(h.nodes.iter().map(Node::tombstones_pending).sum::<usize>(), 0);
    assert!(absent(h.ask(2, 3, get(b"cart"))));
    // A key that holds a value is never collected.
    h.ask(0, 4, put(b"kept", b"pears", CausalContext::empty()));
    h.run();
    assert!(held(&h, b"kept").iter().all(Option::is_some));
}

/// The case: delete with a replica down, let collection run, revive the replica (which
/// still holds the old value), let anti-entropy run: the key stays deleted, and only then is the
/// tombstone collected everywhere.
#[test]
fn a_delete_made_while_a_replica_was_down_stays_deleted_when_it_returns() {
    let mut h = harness();
    let Response::State(Some(written)) = h.ask(0, 1, put(b"cart", b"apples", CausalContext::empty())) else { panic!() };
    h.down[2] = true;
    h.run();
    assert!(matches!(h.ask(0, 2, delete(b"cart", written.context())), Response::State(Some(_))));
    h.run();
    h.run();
    let states = held(&h, b"cart");
    assert!(states[0].as_ref().is_some_and(Siblings::is_tombstone), "n0 keeps the tombstone while n2 is away");
    assert!(states[1].as_ref().is_some_and(Siblings::is_tombstone), "n1 keeps the tombstone while n2 is away");
    assert_eq!(values(states[2].as_ref().unwrap()), vec![b"apples".to_vec()], "n2 missed the delete");
    assert_eq!(collected(&h), 0);
    h.down[2] = false;
    h.run();
    h.run();
    h.run();
    assert_eq!(held(&h, b"cart"), vec![None, None, None], "collected once n2 held the tombstone too");
    for reader in 0..3 {
        assert!(absent(h.ask(reader, 10 + reader as u64, get(b"cart"))), "the delete stayed");
    }
}

/// A node that answers with anything but the tombstone (here: a value written there alone,
/// concurrent with the delete) stops the collection; the value is kept and spread.
#[test]
fn a_node_holding_something_else_keeps_the_key_from_being_collected() {
    let mut h = harness();
    let Response::State(Some(written)) = h.ask(0, 1, put(b"cart", b"apples", CausalContext::empty())) else { panic!() };
    assert!(matches!(h.ask_now(0, 2, delete(b"cart", written.context())), Response::State(Some(_))));
    // n2's copy becomes a concurrent value behind the others' backs (as a write that reached
    // only n2 would leave it).
    let mut other = Siblings::new();
    let n9 = NodeId::new("n9").unwrap();
    other.apply(&n9, &Write::put(b"pears".to_vec(), CausalContext::empty(), 3), ConflictPolicy::Siblings).unwrap();
    let mut theirs = h.disks[2][&record(b"cart")].siblings.clone();
    theirs.merge(&other, ConflictPolicy::Siblings);
    h.disks[2].insert(record(b"cart"), KeyRecord::new(theirs));
    h.run();
    h.run();
    let read = h.ask(1, 3, get(b"cart"));
    assert_eq!(values(&state(read)), vec![b"pears".to_vec()], "the concurrent value survived");
    assert!(held(&h, b"cart").iter().all(Option::is_some), "nothing was collected");
}

/// A node that removed a record keeps the dots it minted for the key taken: a write minted
/// there afterwards is above them, so a client's old context (which covers them) does not
/// hide it, and it survives a merge with the collected history.
#[test]
fn a_write_after_a_collection_is_not_hidden_by_the_collected_history() {
    let mut h = harness();
    let Response::State(Some(written)) = h.ask(0, 1, put(b"cart", b"apples", CausalContext::empty())) else { panic!() };
    let Response::State(Some(deleted)) = h.ask(0, 2, delete(b"cart", written.context())) else { panic!() };
    h.run();
    h.run();
    assert_eq!(held(&h, b"cart"), vec![None, None, None]);
    // A caller still holding the tombstone's context writes again.
    let Response::State(Some(again)) = h.ask(0, 3, put(b"cart", b"pears", deleted.context())) else { panic!() };
    assert_eq!(values(&again.siblings), vec![b"pears".to_vec()]);
    for version in again.siblings.versions() {
        assert!(!deleted.siblings.history().covers(&version.dot), "a dot of the collected key was minted again");
    }
    let read = h.ask(2, 4, get(b"cart"));
    assert_eq!(values(&state(read)), vec![b"pears".to_vec()]);
}

/// A collect is refused by a node whose record is no longer the tombstone, or which holds a
/// hint of the key; a caller without a node certificate may not ask.
#[test]
fn a_collect_removes_only_the_expected_tombstone_and_only_for_nodes() {
    let mut h = Harness::new(3);
    let Response::State(Some(written)) = h.ask(0, 1, put(b"k", b"v", CausalContext::empty())) else { panic!() };
    let collect =
        |siblings: Siblings| Request::Collect { store: StoreName::default_store(), key: b"k".to_vec(), siblings };
    let from_caller = h.ask(0, 2, collect(written.siblings.clone()));
    assert!(matches!(from_caller, Response::Error(ref e) if e.kind == ErrorKind::NotPermitted), "{from_caller:?}");
    // From a node: the record is not what the collector expects, so it stays.
    let peer = Origin::peer(PEER_STREAMS + MAX_NODES, certificate("cert-0"));
    h.nodes[0].handle_message(h.now, peer, Message::Request { id: 1, body: collect(Siblings::new()) });
    h.settle();
    assert!(h.disks[0].contains_key(&record(b"k")));
    assert!(h.answered.iter().any(|(_, r)| *r == Response::Collected(false)));
    // The expected record goes.
    h.nodes[0].handle_message(h.now, peer, Message::Request { id: 2, body: collect(written.siblings) });
    h.settle();
    assert!(!h.disks[0].contains_key(&record(b"k")));
    // (Anti-entropy would bring it back from the others, which were not asked.)
    assert!(h.answered.iter().any(|(_, r)| *r == Response::Collected(true)));
}

/// Checkpoints (moved from the server's glue into the machine): while tombstones are collected
/// each node asks storage for one every half grace, one at a time; with collection off, never.
#[test]
fn storage_is_checkpointed_every_half_grace_one_at_a_time() {
    let mut h = Harness::tuned(2, |c| c.tombstone_grace = Duration::from_secs(10));
    let (start, before) = (h.now, h.checkpoints.clone());
    while h.now < start + Duration::from_secs(60) {
        h.tick();
    }
    for (i, (after, before)) in h.checkpoints.iter().zip(&before).enumerate() {
        assert!((11..=13).contains(&(after - before)), "n{i}: {} checkpoints in 60 s", after - before);
    }

    let info = NodeInfo::new("n0", "addr-0", "z0", 1).unwrap();
    let mut config = NodeConfig::new(info, secret());
    config.tombstone_grace = Duration::from_secs(2);
    let mut node = Node::new(config, ClusterView::new(6), Duration::ZERO).unwrap();
    let mut asked = Vec::new();
    for second in 0..10 {
        node.handle_timeout(Duration::from_secs(second));
        asked.extend(core::iter::from_fn(|| node.poll_io()).filter(|(_, io)| *io == Io::Checkpoint).map(|(id, _)| id));
    }
    assert_eq!(asked.len(), 1, "the first is not answered: no second one");
    // Nor a timer in the past while it is in flight (the simulation found a node spinning on one).
    assert!(node.poll_timeout().is_some_and(|t| t > Duration::from_secs(9)), "{:?}", node.poll_timeout());
    node.handle_io(Duration::from_secs(10), asked[0], Ok(IoOutput::Done));
    node.handle_timeout(Duration::from_secs(11));
    assert!(core::iter::from_fn(|| node.poll_io()).any(|(_, io)| io == Io::Checkpoint), "once answered, the next");

    let mut h = Harness::tuned(1, |c| c.tombstone_grace = Duration::ZERO);
    h.run();
    assert_eq!(h.checkpoints, vec![0], "tombstones never collected: no checkpoint");
}

/// A checkpoint comes at most half a grace after a write, for every grace from a second up;
/// never more often than four times a second, nor less often than every 10 minutes.
#[test]
fn checkpoints_come_at_most_half_a_grace_apart() {
    use crate::node::tombstones::checkpoint_interval;
    for secs in [1, 2, 60, 600, 1200] {
        let grace = Duration::from_secs(secs);
        assert!(checkpoint_interval(grace) <= grace / 2, "grace {secs} s");
    }
    assert_eq!(checkpoint_interval(Duration::from_secs(600)), Duration::from_secs(300));
    assert_eq!(checkpoint_interval(Duration::from_secs(86_400)), Duration::from_secs(600));
    assert_eq!(checkpoint_interval(Duration::from_millis(100)), Duration::from_millis(250));
}

/// Regression (the simulation with `elastic`): a node that becomes a key's first primary in a
/// ring change received the key's tombstone during the change, when it was not its collector,
/// and the former collector gave it up once the change was committed: the tombstone stayed on
/// every replica for good. Each node now scans for the tombstones it collects after a commit.
#[test]
fn a_tombstone_is_collected_after_a_ring_change_gives_it_a_new_collector() {
    let mut h = harness();
    let ring = h.nodes[0].view().ring().unwrap().clone();
    let n3 = NodeInfo::new("n3", "addr-3", "z3", 2).unwrap().with_certificate(certificate("cert-3"));
    // Keys deleted now, so many that n3 (capacity 2) is the first primary of some in the next ring.
    let mut deleted = Vec::new();
    for i in 0..40 {
        let key = format!("gone{i}").into_bytes();
        let Response::State(Some(written)) = h.ask_now(0, 10 + i, put(&key, b"v", CausalContext::empty())) else {
            panic!()
        };
        assert!(matches!(h.ask_now(1, 100 + i, delete(&key, written.context())), Response::State(Some(_))));
        deleted.push(key);
    }
    h.add(n3);
    h.nodes[3].config.tombstone_grace = GRACE;
    for _ in 0..200 {
        h.tick();
        if h.nodes.iter().all(|n| n.view().transition().is_none() && n.view().ring().unwrap().nodes().len() == 4) {
            break;
        }
    }
    let next = h.nodes[0].view().ring().unwrap().clone();
    let n3 = h.nodes[3].id().clone();
    let moved: Vec<&Vec<u8>> = deleted
        .iter()
        .filter(|k| {
            let token = crate::token::Token::of(k);
            next.preference_list(token, 3, 0).primaries().first() == Some(&n3)
                && ring.preference_list(token, 3, 0).primaries().first() != Some(&n3)
        })
        .collect();
    assert!(!moved.is_empty(), "n3 collects some of the deleted keys now");
    for _ in 0..40 {
        h.tick();
    }
    for key in moved {
        let held = held(&h, key);
        for id in next.preference_list(crate::token::Token::of(key), 3, 0).primaries() {
            let i = h.nodes.iter().position(|n| n.id() == id).unwrap();
            assert_eq!(held[i], None, "{id} holds {}", String::from_utf8_lossy(key));
        }
    }
}
