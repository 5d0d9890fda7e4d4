use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::membership::{NodeInfo, NodeStatus};

fn cluster(capacities: &[u32], zones: usize) -> Membership {
    let mut m = Membership::new();
    for (i, &c) in capacities.iter().enumerate() {
        let zone = format!("z{}", i % zones.max(1));
        m.upsert(NodeInfo::new(&format!("node-{i:05}"), "127.0.0.1:7100", &zone, c).unwrap()).unwrap();
    }
    m
}

fn id(i: usize) -> NodeId {
    NodeId::new(&format!("node-{i:05}")).unwrap()
}

fn assert_shares_near_capacity(ring: &Ring, membership: &Membership, tolerance: f64) {
    let total: f64 = membership.ring_members().map(|n| f64::from(n.capacity)).sum();
    for (node, share) in ring.shares() {
        let ideal = f64::from(membership.node(&node).unwrap().capacity) / total;
        let error = (share - ideal).abs() / ideal;
        assert!(error <= tolerance, "{node}: share {share:.5} vs ideal {ideal:.5} ({:.1}% off)", error * 100.0);
    }
}

#[test]
fn equal_capacities_get_equal_shares() {
    let m = cluster(&[1; 100], 4);
    let ring = Ring::build(&m, DEFAULT_PARTITION_BITS).unwrap();
    assert_eq!(ring.nodes().len(), 100);
    assert_shares_near_capacity(&ring, &m, 0.10);
}

#[test]
fn mixed_capacities_get_proportional_shares() {
    let caps: Vec<u32> = (0..99).map(|i| [1, 2, 4][i % 3]).collect();
    let m = cluster(&caps, 3);
    let ring = Ring::build(&m, DEFAULT_PARTITION_BITS).unwrap();
    assert_shares_near_capacity(&ring, &m, 0.10);
}

#[test]
fn adding_a_node_moves_ranges_only_to_it_and_no_more_than_its_share() {
    let mut m = cluster(&[1; 100], 4);
    let before = Ring::build(&m, DEFAULT_PARTITION_BITS).unwrap();
    m.upsert(NodeInfo::new("node-00100", "127.0.0.1:7100", "z0", 1).unwrap()).unwrap();
    let after = before.next(&m).unwrap();
    assert_eq!(after.epoch(), before.epoch() + 1);
    assert_shares_near_capacity(&after, &m, 0.10);
    let moves = before.ownership_diff(&after).unwrap();
    assert!(!moves.is_empty());
    assert!(moves.iter().all(|c| c.to == id(100)), "a range moved between existing nodes");
    let moved: f64 = moves.iter().map(|c| c.range.fraction()).sum();
    assert!(moved <= 1.1 / 101.0, "moved {moved:.5} of the ring, ideal {:.5}", 1.0 / 101.0);
}

#[test]
fn removing_a_node_moves_only_its_ranges() {
    let mut m = cluster(&[1; 100], 4);
    let before = Ring::build(&m, DEFAULT_PARTITION_BITS).unwrap();
    let mut leaving = m.node(&id(37)).unwrap().clone();
    leaving.version += 1;
    leaving.status = NodeStatus::Leaving;
    m.upsert(leaving).unwrap();
    let after = before.next(&m).unwrap();
    assert_shares_near_capacity(&after, &m, 0.10);
    let moves = before.ownership_diff(&after).unwrap();
    assert!(moves.iter().all(|c| c.from == id(37)));
    let moved: f64 = moves.iter().map(|c| c.range.fraction()).sum();
    assert!((moved - 0.01).abs() < 0.001, "moved {moved}");
    assert!(after.nodes().iter().all(|n| n.id != id(37)));
}

/// Gives node `i` a new capacity and returns the next ring after `ring`.
fn recapacitated(ring: &Ring, m: &mut Membership, i: usize, capacity: u32) -> Ring {
    let mut entry = m.node(&id(i)).unwrap().clone();
    entry.version += 1;
    entry.capacity = capacity;
    m.upsert(entry).unwrap();
    let next = ring.next(m).unwrap();
    assert_shares_near_capacity(&next, m, 0.10);
    next
}

#[test]
fn a_capacity_change_moves_data_only_to_or_from_that_node() {
    let mut m = cluster(&[2; 20], 3);
    let ring = Ring::build(&m, 12).unwrap();
    let bigger = recapacitated(&ring, &mut m, 5, 4);
    let moves = ring.ownership_diff(&bigger).unwrap();
    assert!(!moves.is_empty() && moves.iter().all(|c| c.to == id(5)));
    let smaller = recapacitated(&bigger, &mut m, 9, 1);
    let moves = bigger.ownership_diff(&smaller).unwrap();
    assert!(!moves.is_empty() && moves.iter().all(|c| c.from == id(9)));
}

#[test]
fn ten_thousand_nodes_are_served() {
    let caps: Vec<u32> = (0..10_000).map(|i| [1, 2, 4][i % 3]).collect();
    let mut m = cluster(&caps, 5);
    let ring = Ring::build(&m, 20).unwrap();
    assert_shares_near_capacity(&ring, &m, 0.10);
    m.upsert(NodeInfo::new("node-10000", "127.0.0.1:7100", "z0", 2).unwrap()).unwrap();
    let next = ring.next(&m).unwrap();
    assert!(ring.ownership_diff(&next).unwrap().iter().all(|c| c.to == id(10_000)));
    let prefs = next.preference_list(Token::of(b"k"), 3, 3);
    assert_eq!(prefs.primaries().len(), 3);
    assert_eq!(prefs.fallbacks().len(), 3);
}

#[test]
fn rings_are_deterministic_and_validate() {
    let m = cluster(&[1, 2, 3, 4, 5], 2);
    let a = Ring::build(&m, 10).unwrap();
    let b = Ring::build(&m, 10).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.validate(), Ok(()));
    let mut broken = a.clone();
    broken.owners[3] = 99;
    assert!(matches!(broken.validate(), Err(RingError::Inconsistent(_))));
}

#[test]
fn bad_inputs_are_refused() {
    assert_eq!(Ring::build(&Membership::new(), 8), Err(RingError::NoMembers));
    assert_eq!(Ring::build(&cluster(&[1], 1), 3), Err(RingError::PartitionBits(3)));
    let a = Ring::build(&cluster(&[1, 1], 1), 8).unwrap();
    let b = Ring::build(&cluster(&[1, 1], 1), 9).unwrap();
    assert_eq!(a.ownership_diff(&b), Err(RingError::PartitionMismatch(8, 9)));
}

#[test]
fn fewer_nodes_than_n_gives_every_node() {
    let ring = Ring::build(&cluster(&[1, 1], 2), 8).unwrap();
    let prefs = ring.preference_list(Token::of(b"x"), 3, 2);
    assert_eq!(prefs.primaries().len(), 2);
    assert!(prefs.fallbacks().is_empty());
}

#[test]
fn replica_diff_names_gainers_and_losers() {
    let mut m = cluster(&[1; 6], 3);
    let before = Ring::build(&m, 8).unwrap();
    m.upsert(NodeInfo::new("node-00006", "127.0.0.1:7100", "z0", 1).unwrap()).unwrap();
    let after = before.next(&m).unwrap();
    let changes = before.replica_diff(&after, 3).unwrap();
    assert!(!changes.is_empty());
    for c in &changes {
        assert_eq!(c.gained.len(), c.lost.len(), "replica sets keep their size");
    }
    assert!(changes.iter().any(|c| c.gained.contains(&id(6))));
}

/// Issue 9, 1.2: a plan counts each node's replicas before and after; a join's plan moves
/// replicas to the new node, as many as it gains are lost by others, and it agrees with the
/// replica diff.
#[test]
fn a_plan_counts_what_each_node_gains_and_loses() {
    let mut m = cluster(&[1; 6], 3);
    let before = Ring::build(&m, 8).unwrap();
    m.upsert(NodeInfo::new("node-00006", "127.0.0.1:7100", "z0", 2).unwrap()).unwrap();
    let after = before.next(&m).unwrap();
    let plan = RingPlan::between(Some(&before), &after, 3).unwrap();
    assert_eq!((plan.current, plan.next, plan.partitions), (Some(before.version()), after.version(), 256));
    assert_eq!(plan.nodes.iter().map(|n| n.before).sum::<usize>(), 256 * 3);
    assert_eq!(plan.nodes.iter().map(|n| n.after).sum::<usize>(), 256 * 3);
    let lost: usize = plan.nodes.iter().map(|n| n.lost).sum();
    assert_eq!(plan.moves(), lost, "replica sets keep their size");
    let new = plan.nodes.iter().find(|n| n.id == id(6)).unwrap();
    assert_eq!((new.before, new.lost), (0, 0));
    assert_eq!(new.gained, new.after);
    let diff: usize = before
        .replica_diff(&after, 3)
        .unwrap()
        .iter()
        .map(|c| {
            let (first, last) = (c.range.first(), c.range.last());
            let partitions = before.partition_of(last) - before.partition_of(first) + 1;
            partitions * c.gained.len()
        })
        .sum();
    assert_eq!(plan.moves(), diff);
    // A first ring: nothing before, every replica is gained.
    let first = RingPlan::between(None, &before, 3).unwrap();
    assert_eq!(first.moves(), 256 * 3);
    assert!(first.nodes.iter().all(|n| n.before == 0 && n.lost == 0));
}

fn zone_of(m: &Membership, node: &NodeId) -> String {
    String::from(m.node(node).unwrap().zone.as_str())
}

/// The preference list as first written (a walk with a set sized to the ring, vectors for
/// everything): what the allocation-free [`Ring::preference_list`] must equal.
fn reference_preference_list(ring: &Ring, m: &Membership, token: Token, n: usize, max_fallbacks: usize) -> Vec<NodeId> {
    let n = n.min(ring.nodes().len());
    let target_zones = n.min(ring.zone_count());
    let mut walk = ring.walk(token);
    let (mut primaries, mut zones, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    while primaries.len() < n {
        let Some(node) = walk.next() else { break };
        let zone = zone_of(m, node);
        if zones.len() < target_zones && zones.contains(&zone) {
            skipped.push(node.clone());
            continue;
        }
        primaries.push(node.clone());
        if !zones.contains(&zone) {
            zones.push(zone);
        }
        if zones.len() >= target_zones {
            let room = (n - primaries.len()).min(skipped.len());
            primaries.extend(skipped.drain(..room));
        }
    }
    let mut fallbacks = skipped;
    fallbacks.truncate(max_fallbacks);
    fallbacks.extend(walk.take(max_fallbacks - fallbacks.len()).cloned());
    primaries.extend(fallbacks);
    primaries.push(NodeId::new(&format!("primaries-{n}")).unwrap());
    primaries
}

/// How far outside [floor, ceil] a node may end after a change, when holding the band exactly
/// would move data between unchanged nodes (see `balance.rs`).
const SLACK: u64 = 1;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The inline, allocation-free preference list (issue 10) is the one the reference walk
    /// gives, on rings of up to 60 nodes in up to 6 zones, for N up to 8 and up to 10
    /// fallbacks (lists longer than the inline room included).
    #[test]
    fn preference_lists_equal_the_reference_walk(
        caps in proptest::collection::vec(1u32..5, 1..60),
        zones in 1usize..7,
        n in 1usize..9,
        fallbacks in 0usize..11,
        keys in proptest::collection::vec(any::<u64>(), 1..20),
    ) {
        let m = cluster(&caps, zones);
        let ring = Ring::build(&m, 10).unwrap();
        for key in keys {
            let token = Token::of(&key.to_le_bytes());
            let prefs = ring.preference_list(token, n, fallbacks);
            let mut got: Vec<NodeId> = prefs.primaries().iter().chain(prefs.fallbacks()).cloned().collect();
            got.push(NodeId::new(&format!("primaries-{}", prefs.primaries().len())).unwrap());
            prop_assert_eq!(got, reference_preference_list(&ring, &m, token, n, fallbacks));
        }
    }

    #[test]
    fn preference_lists_hold_distinct_nodes_across_zones(
        caps in proptest::collection::vec(1u32..5, 1..40),
        zones in 1usize..6,
        n in 1usize..6,
        keys in proptest::collection::vec(any::<u64>(), 1..20),
    ) {
        let m = cluster(&caps, zones);
        let ring = Ring::build(&m, 10).unwrap();
        let zone_count = ring.zone_count();
        for key in keys {
            let prefs = ring.preference_list(Token::of(&key.to_le_bytes()), n, 4);
            let mut all: Vec<&NodeId> = prefs.primaries().iter().chain(prefs.fallbacks()).collect();
            prop_assert_eq!(prefs.primaries().len(), n.min(caps.len()));
            // Fallbacks continue the walk: the walk's order with the primaries taken out.
            let walked: Vec<&NodeId> =
                ring.walk(prefs.token()).filter(|n| !prefs.is_primary(n)).take(prefs.fallbacks().len()).collect();
            prop_assert_eq!(walked, prefs.fallbacks().iter().collect::<Vec<_>>());
            let count = all.len();
            all.sort();
            all.dedup();
            prop_assert_eq!(all.len(), count, "a node appears twice");
            let mut used: Vec<String> = prefs.primaries().iter().map(|p| zone_of(&m, p)).collect();
            used.sort();
            used.dedup();
            prop_assert_eq!(used.len(), n.min(zone_count).min(caps.len()));
        }
    }

    #[test]
    fn single_changes_move_only_the_changed_node(
        caps in proptest::collection::vec(1u32..8, 1..30),
        bits in 6u8..12,
        added_capacity in 1u32..8,
        removed in any::<prop::sample::Index>(),
    ) {
        let mut m = cluster(&caps, 3);
        let ring = Ring::build(&m, bits).unwrap();
        // Every node holds floor(q) or ceil(q) partitions, give or take `slack`.
        let check_counts = |ring: &Ring, m: &Membership, slack: u64| {
            let total: u64 = m.ring_members().map(|n| u64::from(n.capacity)).sum();
            for (node, share) in ring.shares() {
                let count = (share * ring.partition_count() as f64).round() as u64;
                let scaled = ring.partition_count() as u64 * u64::from(m.node(&node).unwrap().capacity);
                let (floor, ceil) = (scaled / total, scaled.div_ceil(total));
                assert!(count + slack >= floor && count <= ceil + slack, "{node}: {count} not in [{floor}, {ceil}] +- {slack}");
            }
        };
        check_counts(&ring, &m, 0);

        let new_id = id(caps.len());
        m.upsert(NodeInfo::new(new_id.as_str(), "127.0.0.1:7100", "z1", added_capacity).unwrap()).unwrap();
        let grown = ring.next(&m).unwrap();
        check_counts(&grown, &m, SLACK);
        for c in ring.ownership_diff(&grown).unwrap() {
            prop_assert_eq!(&c.to, &new_id);
        }

        if caps.len() > 1 {
            let gone = id(removed.index(caps.len()));
            let mut info = m.node(&gone).unwrap().clone();
            info.version += 1;
            info.status = NodeStatus::Removed;
            m.upsert(info).unwrap();
            let shrunk = grown.next(&m).unwrap();
            check_counts(&shrunk, &m, SLACK);
            for c in grown.ownership_diff(&shrunk).unwrap() {
                prop_assert_eq!(&c.from, &gone);
            }
        }
    }
}
