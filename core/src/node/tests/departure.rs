//! Nodes that go (issue 9, 2.3): leave and remove.

use super::*;

fn put(key: &str, value: &str) -> Request {
    Request::CoordinatePut {
        store: StoreName::default_store(),
        key: key.as_bytes().to_vec(),
        write: Write::put(value.as_bytes().to_vec(), CausalContext::empty(), 1),
        minter: None,
    }
}

fn get(key: &str) -> Request {
    Request::CoordinateGet { store: StoreName::default_store(), key: key.as_bytes().to_vec() }
}

/// Writes `count` keys `k<i>` through the nodes in `through`, in turn.
fn write_keys(h: &mut Harness, count: usize, through: &[usize]) -> BTreeMap<String, String> {
    let mut written = BTreeMap::new();
    for i in 0..count {
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        let node = through[i % through.len()];
        assert!(matches!(h.ask_now(node, 100 + i as u64, put(&key, &value)), Response::State(Some(_))));
        written.insert(key, value);
    }
    written
}

/// Every node in `nodes` holds every key of `written` it is a primary of in its ring.
fn replicas_hold(h: &Harness, nodes: &[usize], written: &BTreeMap<String, String>) {
    for &i in nodes {
        let ring = h.nodes[i].view().ring().unwrap().clone();
        let id = h.nodes[i].id().clone();
        for key in written.keys() {
            if ring.preference_list(crate::token::Token::of(key.as_bytes()), 3, 0).is_primary(&id) {
                let name = (StoreName::default_store(), key.as_bytes().to_vec());
                assert!(h.disks[i].contains_key(&name), "n{i} lacks {key}");
            }
        }
    }
}

fn ring_ids(h: &Harness, node: usize) -> Vec<String> {
    h.nodes[node].view().ring().unwrap().nodes().iter().map(|n| String::from(n.id.as_str())).collect()
}

fn events(node: &mut Node) -> Vec<Event> {
    core::iter::from_fn(|| node.poll_event()).collect()
}

/// 2.3: a node asked to leave hands every partition to the new owners (periodic anti-entropy
/// off: only the transfer moves data) while writes and reads go on; then it marks itself left
/// and says so. Every acknowledged write reads back, the remaining nodes hold what they own, and
/// the node that left refuses to start again from its folder.
#[test]
fn a_leaving_node_hands_its_partitions_over_then_leaves() {
    let mut h = Harness::tuned(4, |c| c.anti_entropy_interval = Duration::ZERO);
    let mut written = write_keys(&mut h, 120, &[0, 1, 2, 3]);
    let n1 = h.nodes[1].id().clone();
    // Only the node itself takes its leave.
    let elsewhere = h.ask_now(0, 1, Request::Leave { node: n1.clone() });
    assert!(
        matches!(&elsewhere, Response::Error(e) if e.kind == ErrorKind::Unavailable && e.message.contains("addr-1")),
        "{elsewhere:?}"
    );
    assert_eq!(h.ask_now(1, 2, Request::Leave { node: n1.clone() }), Response::Ack);
    assert_eq!(h.ask_now(1, 3, Request::Leave { node: n1.clone() }), Response::Ack, "a leave again is no error");
    let mut stream = 1000;
    for round in 0..400 {
        h.tick();
        if h.nodes[1].has_left() && h.nodes.iter().all(|n| n.view().transition().is_none()) {
            break;
        }
        let (key, value) = (format!("t{round}"), format!("w{round}"));
        stream += 1;
        if matches!(h.ask_now([0, 2, 3][round % 3], stream, put(&key, &value)), Response::State(Some(_))) {
            written.insert(key, value);
        }
        let probe = format!("k{}", round % 120);
        stream += 1;
        let read = state(h.ask_now([2, 3, 0][round % 3], stream, get(&probe)));
        assert_eq!(values(&read), vec![written[&probe].as_bytes().to_vec()], "{probe} at round {round}");
    }
    assert!(h.nodes[1].has_left(), "the leave completed");
    assert!(events(&mut h.nodes[1]).contains(&Event::Left));
    h.run();
    for i in [0, 2, 3] {
        assert_eq!(ring_ids(&h, i), ["n0", "n2", "n3"]);
        assert_eq!(h.nodes[i].view().membership().node(&n1).unwrap().status, crate::membership::NodeStatus::Removed);
    }
    replicas_hold(&h, &[0, 2, 3], &written);
    for (key, value) in &written {
        stream += 1;
        assert_eq!(values(&state(h.ask_now(2, stream, get(key)))), vec![value.as_bytes().to_vec()], "{key}");
    }
    // The node that left serves nothing, and does not start again under its id.
    let refused = h.ask_now(1, 5, get("k1"));
    assert!(matches!(&refused, Response::Error(e) if e.message.contains("has left")), "{refused:?}");
    let mut config = NodeConfig::new(h.nodes[1].info().clone(), secret());
    config.seeds = vec![String::from("addr-0")];
    let view = h.nodes[1].view().clone();
    assert_eq!(Node::new(config, view, h.now).unwrap_err(), NodeError::Left(n1));
}

/// 2.3: a node gone for good is removed through any other node (not while that node holds it
/// up); its partitions are re-replicated from the surviving replicas, though it never answers
/// a comparison, and every acknowledged write reads back.
#[test]
fn a_removed_nodes_partitions_are_re_replicated_from_the_survivors() {
    let mut h = Harness::tuned(5, |c| c.anti_entropy_interval = Duration::ZERO);
    let written = write_keys(&mut h, 150, &[0, 1, 2, 3, 4]);
    let n2 = h.nodes[2].id().clone();
    let up = h.ask_now(0, 1, Request::RemoveNode { node: n2.clone() });
    assert!(matches!(&up, Response::Error(e) if e.kind == ErrorKind::NotPermitted && e.message.contains("leave")));
    let nobody = h.ask_now(0, 2, Request::RemoveNode { node: NodeId::new("n9").unwrap() });
    assert!(matches!(&nobody, Response::Error(e) if e.message.contains("no node n9")), "{nobody:?}");
    h.down[2] = true;
    for _ in 0..30 {
        h.tick();
    }
    assert_ne!(h.nodes[3].peer_state(&n2), crate::liveness::PeerState::Up, "n3 holds n2 down");
    assert_eq!(h.ask_now(3, 3, Request::RemoveNode { node: n2.clone() }), Response::Ack);
    for _ in 0..400 {
        h.tick();
        let done = [0, 1, 3, 4].iter().all(|&i| {
            let view = h.nodes[i].view();
            view.transition().is_none() && view.ring().is_some_and(|r| r.nodes().len() == 4)
        });
        if done {
            break;
        }
    }
    for i in [0, 1, 3, 4] {
        assert_eq!(ring_ids(&h, i), ["n0", "n1", "n3", "n4"], "n{i}");
    }
    replicas_hold(&h, &[0, 1, 3, 4], &written);
    for (i, (key, value)) in written.iter().enumerate() {
        let read = state(h.ask_now([0, 1, 3, 4][i % 4], 5000 + i as u64, get(key)));
        assert_eq!(values(&read), vec![value.as_bytes().to_vec()], "{key}");
    }
}

/// 2.3: the cluster's last member can neither leave nor be removed, and a node cannot remove
/// itself.
#[test]
fn the_last_member_cannot_go() {
    let mut h = Harness::new(1);
    let n0 = h.nodes[0].id().clone();
    let refused = h.ask_now(0, 1, Request::Leave { node: n0.clone() });
    assert!(matches!(&refused, Response::Error(e) if e.message.contains("last member")), "{refused:?}");
    let itself = h.ask_now(0, 2, Request::RemoveNode { node: n0 });
    assert!(matches!(&itself, Response::Error(e) if e.message.contains("cannot remove itself")), "{itself:?}");
    assert!(!h.nodes[0].has_left());
}

/// 2.3 with 2.5: a hinted write for a node that is then removed is handed to a replica of the
/// key instead, and the hint goes.
#[test]
fn a_hint_for_a_removed_node_goes_to_a_replica_of_the_key() {
    let mut h = Harness::new(5);
    let (store, key) = sloppy_key_of_n3(&mut h);
    let n3 = h.nodes[3].id().clone();
    h.down[3] = true;
    h.run();
    let write = Write::put(b"v".to_vec(), CausalContext::empty(), 1);
    let body = Request::CoordinatePut { store: store.clone(), key: key.clone(), write, minter: None };
    assert!(matches!(h.ask(0, 2, body), Response::State(Some(_))));
    let holder = (0..5).find(|&i| !h.hint_disks[i].is_empty()).expect("a fallback stored a hint");
    assert_eq!(h.ask(0, 3, Request::RemoveNode { node: n3 }), Response::Ack);
    for _ in 0..100 {
        h.tick();
    }
    assert!(h.hint_disks[holder].is_empty(), "the hint was handed on");
    let ring = h.nodes[0].view().ring().unwrap().clone();
    assert_eq!(ring.nodes().len(), 4);
    let record = (store.clone(), key.clone());
    for id in ring.preference_list(crate::token::Token::of(&key), 3, 0).primaries() {
        let i = h.nodes.iter().position(|n| n.id() == id).unwrap();
        assert!(h.disks[i].contains_key(&record), "{id} lacks the write");
    }
}

/// Regression (the simulation with `elastic`): a node restarted after its only seed left stayed
/// out for good, asking the gone seed to let it join. It now asks the members its saved view
/// knows too.
#[test]
fn a_node_whose_seed_left_joins_again_through_the_members_it_knows() {
    let mut h = Harness::new(4);
    let n0 = h.nodes[0].id().clone();
    assert_eq!(h.ask_now(0, 1, Request::Leave { node: n0 }), Response::Ack);
    for _ in 0..200 {
        h.tick();
        if h.nodes[0].has_left() {
            break;
        }
    }
    assert!(h.nodes[0].has_left());
    h.down[0] = true;
    // n3 restarts from its folder; its only seed is n0's address.
    let mut config = NodeConfig::new(h.nodes[3].info().clone(), secret());
    config.seeds = vec![String::from("addr-0")];
    config.incarnation = 2;
    let view = h.nodes[3].view().clone();
    h.nodes[3] = Node::new(config, view, h.now).unwrap();
    assert!(!h.nodes[3].has_joined());
    h.run();
    assert!(h.nodes[3].has_joined(), "n3 joined again through n1 or n2");
}

/// Regression (the simulation with `elastic`): a new node joined through another new node that
/// had not got in yet (its seed had gone), and the two founded a second cluster of their own. A
/// node that knows no cluster yet refuses joins; the joiner gets in once its seed has.
#[test]
fn a_node_that_has_not_joined_takes_no_join() {
    let mut h = Harness::new(3);
    // n3's only seed is an address nobody answers at; n4 joins through n3.
    let n3 = NodeInfo::new("n3", "addr-3", "z0", 1).unwrap().with_certificate(certificate("cert-3"));
    h.add_via(n3, Some("addr-9"));
    let n4 = NodeInfo::new("n4", "addr-4", "z1", 1).unwrap().with_certificate(certificate("cert-4"));
    h.add_via(n4, Some("addr-3"));
    h.run();
    assert!(!h.nodes[3].has_joined());
    assert!(!h.nodes[4].has_joined(), "n4 did not join through a node outside any cluster");
    assert!(h.nodes[4].view().ring().is_none());
    assert!(h.nodes[3].view().ring().is_none());
}

/// 2.4: a gainer reports how far it has received its partitions: in its status while the
/// change is under way, and in an event once it has them all (with what it pulled).
#[test]
fn a_gainer_reports_its_progress() {
    let mut h = Harness::tuned(3, |c| c.anti_entropy_interval = Duration::ZERO);
    let written = write_keys(&mut h, 120, &[0, 1, 2]);
    let n3 = NodeInfo::new("n3", "addr-3", "z3", 1).unwrap().with_certificate(certificate("cert-3"));
    h.add(n3);
    let mut seen = None;
    let mut done = None;
    for _ in 0..300 {
        h.tick();
        if let Some(report) = h.nodes[3].status(h.now).transfer {
            seen.get_or_insert(report);
        }
        for event in events(&mut h.nodes[3]) {
            if let Event::Receiving { progress, done: true } = event {
                done = Some(progress);
            }
        }
        if h.nodes.iter().all(|n| n.view().transition().is_none() && n.view().ring().unwrap().nodes().len() == 4) {
            break;
        }
    }
    let seen = seen.expect("n3's status showed its progress during the change");
    assert!(seen.partitions_gained > 0);
    let done = done.expect("n3 reported it had received everything");
    assert_eq!(done.partitions_received, done.partitions_gained);
    assert_eq!(done.partitions_gained, seen.partitions_gained);
    let ring = h.nodes[3].view().ring().unwrap().clone();
    let id = h.nodes[3].id().clone();
    let owned =
        written.keys().filter(|k| ring.preference_list(crate::token::Token::of(k.as_bytes()), 3, 0).is_primary(&id));
    assert_eq!(done.keys_received, owned.count() as u64, "n3 pulled each key it owns once");
    assert!(done.bytes_received > done.keys_received);
    assert_eq!(done.bytes_left_estimate(), Some(0));
    assert!(h.nodes[3].status(h.now).transfer.is_none(), "no change under way");
}

/// 2.2: once a join is committed, the old owners remove the records of the keys they lost, but
/// those holding a version they minted (see `node::shedding`); every acknowledged write still
/// reads back.
#[test]
fn old_owners_shed_the_keys_they_lost_once_a_change_is_committed() {
    let mut h = Harness::tuned(3, |c| c.anti_entropy_interval = Duration::ZERO);
    let written = write_keys(&mut h, 150, &[0, 1, 2]);
    let n3 = NodeInfo::new("n3", "addr-3", "z3", 1).unwrap().with_certificate(certificate("cert-3"));
    h.add(n3);
    for _ in 0..300 {
        h.tick();
        if h.nodes.iter().all(|n| n.view().transition().is_none() && n.view().ring().unwrap().nodes().len() == 4) {
            break;
        }
    }
    h.run();
    let ring = h.nodes[0].view().ring().unwrap().clone();
    let (mut shed, mut kept) = (0, 0);
    for i in 0..3 {
        let (id, actor) = (h.nodes[i].id().clone(), h.nodes[i].actor().clone());
        for key in written.keys() {
            if ring.preference_list(crate::token::Token::of(key.as_bytes()), 3, 0).is_primary(&id) {
                continue;
            }
            match h.disks[i].get(&(StoreName::default_store(), key.as_bytes().to_vec())) {
                None => shed += 1,
                Some(record) => {
                    assert!(record.siblings.history().counter(&actor) > 0, "n{i} kept {key}, which it did not mint");
                    kept += 1;
                }
            }
        }
    }
    assert!(shed > 20, "{shed} records shed, {kept} kept");
    replicas_hold(&h, &[0, 1, 2, 3], &written);
    for (i, (key, value)) in written.iter().enumerate() {
        let read = state(h.ask_now(i % 4, 9000 + i as u64, get(key)));
        assert_eq!(values(&read), vec![value.as_bytes().to_vec()], "{key}");
    }
}

/// Restarts node `i` from its folder (its view and storage) as a new incarnation.
fn restart(h: &mut Harness, i: usize) {
    let mut config = NodeConfig::new(h.nodes[i].info().clone(), secret());
    config.seeds = vec![String::from("addr-0")];
    config.seed = i as u64;
    config.incarnation = 2;
    (h.tune)(&mut config);
    let view = h.nodes[i].view().clone();
    h.nodes[i] = Node::new(config, view, h.now).unwrap();
}

/// 2.2: a transfer resumes after a restart of either side. The gainer, restarted partway
/// through (its budget lets it pull a few keys a second), keeps what it received and pulls only
/// the rest; a source restarted at the same moment serves it again; the change is committed
/// with every key on its new replicas.
#[test]
fn a_transfer_resumes_after_a_restart_of_the_gainer_and_of_a_source() {
    let mut h = Harness::tuned(3, |c| {
        c.anti_entropy_interval = Duration::ZERO;
        c.anti_entropy_budget = 400;
    });
    let written = write_keys(&mut h, 120, &[0, 1, 2]);
    let n3 = NodeInfo::new("n3", "addr-3", "z3", 1).unwrap().with_certificate(certificate("cert-3"));
    h.add(n3);
    let mut partway = None;
    for _ in 0..300 {
        h.tick();
        let report = h.nodes[3].status(h.now).transfer;
        if let Some(r) = report.filter(|r| r.keys_received >= 5 && r.partitions_received < r.partitions_gained) {
            partway = Some(r);
            break;
        }
    }
    let partway = partway.expect("n3 stopped partway through its transfer");
    let held = h.disks[3].len();
    assert!(held >= 5, "n3 holds what it received ({partway:?})");
    restart(&mut h, 3);
    restart(&mut h, 1);
    events(&mut h.nodes[3]);
    let mut done = None;
    for _ in 0..600 {
        h.tick();
        for event in events(&mut h.nodes[3]) {
            if let Event::Receiving { progress, done: true } = event {
                done = Some(progress);
            }
        }
        if h.nodes.iter().all(|n| n.view().transition().is_none() && n.view().ring().unwrap().nodes().len() == 4) {
            break;
        }
    }
    let done = done.expect("the restarted gainer finished its transfer");
    assert_eq!(ring_ids(&h, 0), ["n0", "n1", "n2", "n3"], "the change was committed");
    let ring = h.nodes[3].view().ring().unwrap().clone();
    let id = h.nodes[3].id().clone();
    let owned =
        written.keys().filter(|k| ring.preference_list(crate::token::Token::of(k.as_bytes()), 3, 0).is_primary(&id));
    let owned = owned.count();
    assert!(
        done.keys_received as usize <= owned - held,
        "after the restart n3 pulled {} keys: only the {} of its {owned} it lacked",
        done.keys_received,
        owned - held
    );
    replicas_hold(&h, &[0, 1, 2, 3], &written);
    for (i, (key, value)) in written.iter().enumerate() {
        assert_eq!(values(&state(h.ask_now(i % 4, 9000 + i as u64, get(key)))), vec![value.as_bytes().to_vec()]);
    }
}
