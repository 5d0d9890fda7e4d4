//! The checkers: what a run's history and the cluster's final state must satisfy.
//!
//! A write *saw* the values of the read whose context it carries. A write supersedes what it saw
//! and, transitively, what those writes saw. Failed and unanswered writes count as "maybe
//! applied": they may supersede, they need not be present.

use std::collections::{BTreeMap, BTreeSet};

use quickv_core::identity::NodeId;
use quickv_core::version::Siblings;

use crate::workload::{KeyId, LWW_STORE, Op, OpKind, Status, value_name};

/// What the cluster holds after the run.
#[derive(Debug, Default)]
pub(crate) struct Final {
    /// Each key's state as a final coordinated read returned it.
    pub(crate) reads: BTreeMap<KeyId, Siblings>,
    /// Each key's state on each of its primary replicas' disks.
    pub(crate) replicas: BTreeMap<KeyId, Vec<(NodeId, Option<Siblings>)>>,
}

/// Every violated property, one line each.
pub(crate) fn check(history: &[Op], finals: &Final, pending: &[usize]) -> Vec<String> {
    let mut violations = Vec::new();
    for &op in pending {
        violations.push(format!(
            "request {op} ({:?} of {}) was never answered",
            history[op].kind,
            name(&history[op].key)
        ));
    }
    let keys: BTreeSet<&KeyId> = history.iter().map(|op| &op.key).collect();
    for key in keys {
        let ops: Vec<&Op> = history.iter().filter(|op| &op.key == key).collect();
        check_key(key, &ops, finals, &mut violations);
    }
    violations
}

fn check_key(key: &KeyId, ops: &[&Op], finals: &Final, violations: &mut Vec<String>) {
    let Some(state) = finals.reads.get(key) else {
        violations.push(format!("{}: no final read succeeded after the faults stopped", name(key)));
        return;
    };
    let lww = key.0.as_str() == LWW_STORE;
    let values: Vec<String> = state.values().map(value_name).collect();
    let writes: BTreeMap<&str, &Op> = ops
        .iter()
        .filter_map(|op| match &op.kind {
            OpKind::Put(v) => Some((v.as_str(), *op)),
            _ => None,
        })
        .collect();
    let writes_that = |acknowledged_only: bool| {
        let starts = ops.iter().filter(|op| op.kind != OpKind::Get && (!acknowledged_only || op.status == Status::Ok));
        superseded(starts.map(|op| &op.seen), &writes)
    };
    let superseded_by_any = writes_that(false);
    let superseded_by_acked = writes_that(true);

    // Acknowledged writes are there unless superseded (last-writer-wins keeps one of the
    // concurrent writes, so only its other properties are checked).
    if !lww {
        for (value, op) in &writes {
            if op.status == Status::Ok && !superseded_by_any.contains(*value) && !values.iter().any(|v| v == value) {
                violations.push(format!("{}: acknowledged write {value} is lost", name(key)));
            }
        }
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for value in &values {
        *counts.entry(value.as_str()).or_default() += 1;
        if superseded_by_acked.contains(value) {
            violations.push(format!("{}: {value} came back after an acknowledged write superseded it", name(key)));
        }
        if !writes.contains_key(value.as_str()) {
            violations.push(format!("{}: {value} was never written", name(key)));
        }
    }
    for (value, count) in counts {
        if count > 1 {
            violations.push(format!("{}: one put of {value} left {count} versions", name(key)));
        }
    }
    // Concurrent writers: the puts no acknowledged write superseded (a blind write is
    // concurrent with every other write).
    let concurrent = writes.keys().filter(|v| !superseded_by_acked.contains(**v)).count();
    let limit = if lww { 1 } else { concurrent };
    if values.len() > limit {
        violations.push(format!("{}: {} siblings from {concurrent} concurrent writes", name(key), values.len()));
    }
    if let Some(replicas) = finals.replicas.get(key) {
        let first = replicas.first().map(|(_, s)| s.clone().unwrap_or_default());
        for (node, s) in replicas {
            if Some(s.clone().unwrap_or_default()) != first {
                violations.push(format!("{}: replica {node} holds {s:?}, another {first:?}", name(key)));
            }
        }
    }
}

/// Every value the given seen sets supersede, transitively through the writes they saw.
fn superseded<'a>(seen: impl Iterator<Item = &'a BTreeSet<String>>, writes: &BTreeMap<&str, &Op>) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<String> = seen.flatten().cloned().collect();
    while let Some(value) = todo.pop() {
        if out.insert(value.clone())
            && let Some(op) = writes.get(value.as_str())
        {
            todo.extend(op.seen.iter().cloned());
        }
    }
    out
}

fn name(key: &KeyId) -> String {
    format!("{}/{}", key.0, String::from_utf8_lossy(&key.1))
}
