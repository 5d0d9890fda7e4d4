//! Capacity-weighted partition assignment with minimal movement.
//!
//! Each ring member `i` of capacity `c_i` has the exact quota `q_i = P * c_i / C` of the `P`
//! partitions (`C` is the total capacity) and should hold `floor(q_i)` or `ceil(q_i)` of them.
//! A partition may move only **from a node that left, or to or from a node whose entry changed**
//! (new in the ring, or a new capacity): data never moves between two nodes that did not change.
//! From the previous ring:
//!
//! 1. partitions of nodes that left, and the surplus of changed nodes above `ceil`, are *free*;
//! 2. unchanged nodes below `floor` take free partitions;
//! 3. changed nodes below `floor` take free partitions, then partitions of unchanged nodes, those
//!    furthest above their quota first;
//! 4. free partitions left go one each to nodes below `ceil`, changed nodes first;
//! 5. changed nodes below `ceil` take the surplus of unchanged nodes above `ceil`.
//!
//! The first ring has no previous ring, every node counts as changed, and every node ends in
//! `[floor, ceil]`. Later rings keep that band whenever the movement rule allows; when it does
//! not (partitions so coarse that a departure lifts more floors than it frees), a node stays at
//! most a partition or two outside it until the next change. All arithmetic is on integers and
//! every tie is broken by node order, so the result depends only on the previous ring and the
//! membership.

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Reverse;

use super::{Ring, RingError, RingNode};
use crate::membership::Membership;
use crate::mix::mix64;

const UNOWNED: u32 = u32::MAX;

pub(super) fn assign(
    previous: Option<&Ring>,
    membership: &Membership,
    partition_bits: u8,
    epoch: u64,
) -> Result<Ring, RingError> {
    let nodes: Vec<RingNode> = membership
        .ring_members()
        .map(|n| RingNode { id: n.id.clone(), zone: n.zone.clone(), capacity: n.capacity })
        .collect();
    if nodes.is_empty() {
        return Err(RingError::NoMembers);
    }
    let partitions = 1usize << partition_bits;
    if nodes.len() > partitions {
        return Err(RingError::TooManyNodes { nodes: nodes.len(), partitions });
    }

    // Carry previous owners over to the new node indices; a node is unchanged when the previous
    // ring had it with the same capacity.
    let mut owners = alloc::vec![UNOWNED; partitions];
    let mut changed = alloc::vec![true; nodes.len()];
    if let Some(prev) = previous {
        let remap: Vec<u32> = prev
            .nodes
            .iter()
            .map(|n| nodes.binary_search_by(|m| m.id.cmp(&n.id)).map_or(UNOWNED, |i| i as u32))
            .collect();
        for (old, &new) in prev.nodes.iter().zip(&remap) {
            if new != UNOWNED && old.capacity == nodes[new as usize].capacity {
                changed[new as usize] = false;
            }
        }
        for (slot, &o) in owners.iter_mut().zip(&prev.owners) {
            *slot = remap[o as usize];
        }
    }

    let quotas = Quotas::new(&nodes, partitions);
    let mut held: Vec<Vec<u32>> = alloc::vec![Vec::new(); nodes.len()];
    let mut free: Vec<u32> = Vec::new();
    for (p, &o) in owners.iter().enumerate() {
        if o == UNOWNED {
            free.push(p as u32);
        } else {
            held[o as usize].push(p as u32);
        }
    }
    // Each node gives partitions away in a fixed pseudo-random order, so what it keeps is stable.
    for list in &mut held {
        list.sort_unstable_by_key(|&p| Reverse(mix64(u64::from(p))));
    }
    // 1. Free partitions: those of departed nodes, and changed nodes' surplus above ceil.
    for (i, list) in held.iter_mut().enumerate() {
        while changed[i] && list.len() > quotas.ceil(i) {
            free.extend(list.pop());
        }
    }
    free.sort_unstable_by_key(|&p| (mix64(u64::from(p) ^ epoch.rotate_left(32)), p));
    free.reverse();
    // 2. Unchanged nodes up to floor, from the free partitions.
    for i in (0..nodes.len()).filter(|&i| !changed[i]) {
        while held[i].len() < quotas.floor(i) {
            let Some(p) = free.pop() else { break };
            held[i].push(p);
        }
    }
    // 3. Changed nodes up to floor, from the free partitions, then from unchanged nodes.
    let mut donors = Donors::new(&held, &changed, &quotas, |q, i, n| n > q.floor(i));
    for i in (0..nodes.len()).filter(|&i| changed[i]) {
        while held[i].len() < quotas.floor(i) {
            let Some(p) = free.pop().or_else(|| donors.take(&mut held, &quotas)) else { break };
            held[i].push(p);
        }
    }
    // 4. Free partitions left: one each to nodes below ceil, changed nodes first.
    if !free.is_empty() {
        let mut takers: Vec<usize> = (0..nodes.len()).filter(|&i| held[i].len() < quotas.ceil(i)).collect();
        takers.sort_by_key(|&i| (Reverse(changed[i]), Reverse(quotas.shortfall(i, held[i].len())), i));
        for i in takers {
            let Some(p) = free.pop() else { break };
            held[i].push(p);
        }
    }
    if !free.is_empty() {
        return Err(RingError::Inconsistent("partitions left unassigned"));
    }
    // 5. Changed nodes up to ceil, from unchanged nodes above ceil.
    let mut donors = Donors::new(&held, &changed, &quotas, |q, i, n| n > q.ceil(i));
    for i in (0..nodes.len()).filter(|&i| changed[i]) {
        while held[i].len() < quotas.ceil(i) {
            let Some(p) = donors.take(&mut held, &quotas) else { break };
            held[i].push(p);
        }
    }
    for (i, list) in held.iter().enumerate() {
        for &p in list {
            owners[p as usize] = i as u32;
        }
    }

    let mut zones: Vec<_> = nodes.iter().map(|n| n.zone.clone()).collect();
    zones.sort();
    zones.dedup();
    let zone_of = nodes.iter().map(|n| zones.binary_search(&n.zone).map_or(0, |z| z as u32)).collect();
    Ok(Ring::from(super::RingParts { epoch, partition_bits, nodes, zone_of, zone_count: zones.len() as u32, owners }))
}

/// Unchanged nodes that may give partitions to changed ones, furthest above quota first.
struct Donors {
    heap: BinaryHeap<(u128, Reverse<usize>)>,
    eligible: fn(&Quotas, usize, usize) -> bool,
}

impl Donors {
    fn new(
        held: &[Vec<u32>],
        changed: &[bool],
        quotas: &Quotas,
        eligible: fn(&Quotas, usize, usize) -> bool,
    ) -> Donors {
        let heap = (0..held.len())
            .filter(|&i| !changed[i] && eligible(quotas, i, held[i].len()))
            .map(|i| (quotas.excess(i, held[i].len()), Reverse(i)))
            .collect();
        Donors { heap, eligible }
    }

    /// Takes one partition from the donor furthest above its quota.
    fn take(&mut self, held: &mut [Vec<u32>], quotas: &Quotas) -> Option<u32> {
        let (_, Reverse(i)) = self.heap.pop()?;
        let p = held[i].pop();
        if (self.eligible)(quotas, i, held[i].len()) {
            self.heap.push((quotas.excess(i, held[i].len()), Reverse(i)));
        }
        p
    }
}

/// Exact quotas `P * c_i / C`, kept as integers scaled by `C`.
struct Quotas {
    scaled: Vec<u128>,
    total: u128,
}

impl Quotas {
    fn new(nodes: &[RingNode], partitions: usize) -> Quotas {
        let total: u128 = nodes.iter().map(|n| u128::from(n.capacity)).sum();
        let scaled = nodes.iter().map(|n| partitions as u128 * u128::from(n.capacity)).collect();
        Quotas { scaled, total }
    }

    fn floor(&self, i: usize) -> usize {
        (self.scaled[i] / self.total) as usize
    }

    fn ceil(&self, i: usize) -> usize {
        self.scaled[i].div_ceil(self.total) as usize
    }

    /// How far above its quota a node holding `held` partitions is, scaled by `C`.
    fn excess(&self, i: usize, held: usize) -> u128 {
        (held as u128 * self.total).saturating_sub(self.scaled[i])
    }

    /// How far below its quota a node holding `held` partitions is, scaled by `C`.
    fn shortfall(&self, i: usize, held: usize) -> u128 {
        self.scaled[i].saturating_sub(held as u128 * self.total)
    }
}
