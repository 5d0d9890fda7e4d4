//! Capacity-weighted partition assignment with minimal movement.
//!
//! Each ring member `i` of capacity `c_i` has the exact quota `q_i = P * c_i / C` of the `P`
//! partitions (`C` is the total capacity); it must end with `floor(q_i)` or `ceil(q_i)`
//! partitions. From the previous ring:
//!
//! 1. partitions of nodes no longer in the ring go to a pool;
//! 2. nodes above `ceil(q_i)` release their surplus to the pool;
//! 3. if the pool cannot lift every node to `floor(q_i)`, the nodes furthest above their quota
//!    release one partition each until it can;
//! 4. nodes below `floor(q_i)` take from the pool, and what is left goes one partition each to
//!    nodes below `ceil(q_i)`, those already receiving first.
//!
//! All arithmetic is on integers and every tie is broken by node order, so the result depends
//! only on the previous ring and the membership.

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

    // Carry previous owners over to the new node indices.
    let mut owners = alloc::vec![UNOWNED; partitions];
    if let Some(prev) = previous {
        let remap: Vec<u32> = prev
            .nodes
            .iter()
            .map(|n| nodes.binary_search_by(|m| m.id.cmp(&n.id)).map_or(UNOWNED, |i| i as u32))
            .collect();
        for (slot, &o) in owners.iter_mut().zip(&prev.owners) {
            *slot = remap[o as usize];
        }
    }

    let quotas = Quotas::new(&nodes, partitions);
    let mut held: Vec<Vec<u32>> = alloc::vec![Vec::new(); nodes.len()];
    let mut pool: Vec<u32> = Vec::new();
    for (p, &o) in owners.iter().enumerate() {
        if o == UNOWNED {
            pool.push(p as u32);
        } else {
            held[o as usize].push(p as u32);
        }
    }
    // Each node gives partitions away in a fixed pseudo-random order, so what it keeps is stable.
    for list in &mut held {
        list.sort_unstable_by_key(|&p| Reverse(mix64(u64::from(p))));
    }

    // 2. Surplus above ceil.
    for (i, list) in held.iter_mut().enumerate() {
        let ceil = quotas.ceil(i);
        while list.len() > ceil {
            pool.extend(list.pop());
        }
    }
    // 3. Make sure the pool covers every deficit below floor.
    let need: usize = held.iter().enumerate().map(|(i, l)| quotas.floor(i).saturating_sub(l.len())).sum();
    if pool.len() < need {
        let mut donors: BinaryHeap<(u128, Reverse<usize>)> = held
            .iter()
            .enumerate()
            .filter(|(i, l)| l.len() > quotas.floor(*i))
            .map(|(i, l)| (quotas.excess(i, l.len()), Reverse(i)))
            .collect();
        while pool.len() < need {
            let Some((_, Reverse(i))) = donors.pop() else { break };
            pool.extend(held[i].pop());
            if held[i].len() > quotas.floor(i) {
                donors.push((quotas.excess(i, held[i].len()), Reverse(i)));
            }
        }
    }
    // 4. Fill deficits, then hand out what is left.
    pool.sort_unstable_by_key(|&p| (mix64(u64::from(p) ^ epoch.rotate_left(32)), p));
    pool.reverse();
    let mut receiving = alloc::vec![false; nodes.len()];
    for (i, list) in held.iter_mut().enumerate() {
        while list.len() < quotas.floor(i) {
            let Some(p) = pool.pop() else { break };
            list.push(p);
            receiving[i] = true;
        }
    }
    if !pool.is_empty() {
        let mut takers: Vec<usize> = (0..nodes.len()).filter(|&i| held[i].len() < quotas.ceil(i)).collect();
        takers.sort_by_key(|&i| (Reverse(receiving[i]), Reverse(quotas.shortfall(i, held[i].len())), i));
        for i in takers {
            let Some(p) = pool.pop() else { break };
            held[i].push(p);
        }
    }
    if !pool.is_empty() {
        return Err(RingError::Inconsistent("partitions left unassigned"));
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
    Ok(Ring { epoch, partition_bits, nodes, zone_of, zone_count: zones.len() as u32, owners })
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
