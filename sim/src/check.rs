//! The checkers: what a run's history and the cluster's final state must satisfy.
//!
//! A write *saw* the values of the read whose context it carries. A write supersedes what it saw
//! and, transitively, what those writes saw. Failed and unanswered writes count as "maybe
//! applied": they may supersede, they need not be present.

use std::collections::{BTreeMap, BTreeSet};

use quickv_core::cluster::ClusterView;
use quickv_core::identity::NodeId;
use quickv_core::membership::NodeInfo;
use quickv_core::store::{StoreConfig, StoreName};
use quickv_core::version::Siblings;

use crate::workload::{KeyId, LWW_STORE, Op, OpKind, Status, value_name};

/// What the cluster holds after the run.
#[derive(Debug, Default)]
pub(crate) struct Final {
    /// Each key's state as a final coordinated read returned it.
    pub(crate) reads: BTreeMap<KeyId, Siblings>,
    /// Each key's state on each of its primary replicas' disks.
    pub(crate) replicas: BTreeMap<KeyId, Vec<(NodeId, Option<Siblings>)>>,
    /// The raced stores each running node's view holds, with their settings.
    pub(crate) catalogues: Vec<(NodeId, BTreeMap<StoreName, StoreConfig>)>,
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
    let keys: BTreeSet<&KeyId> =
        history.iter().filter(|op| !matches!(op.kind, OpKind::Create(_))).map(|op| &op.key).collect();
    for key in keys {
        let ops: Vec<&Op> = history.iter().filter(|op| &op.key == key).collect();
        check_key(key, &ops, finals, &mut violations);
    }
    let creates: BTreeSet<&StoreName> =
        history.iter().filter(|op| matches!(op.kind, OpKind::Create(_))).map(|op| &op.key.0).collect();
    for store in creates {
        let ops: Vec<&Op> = history.iter().filter(|op| &op.key.0 == store).collect();
        check_creates(store, &ops, finals, &mut violations);
    }
    violations
}

/// Store creation has one winner: of creates of one name with different settings at most one
/// is told "created", and once the views have converged every node serves the store with those
/// settings (or, if nobody was told, with the settings of a create that may have been applied).
fn check_creates(store: &StoreName, ops: &[&Op], finals: &Final, violations: &mut Vec<String>) {
    let settings = |ok: bool| -> BTreeSet<StoreConfig> {
        ops.iter()
            .filter(|op| match &op.status {
                Status::Ok => ok,
                // A refusal naming the existing settings applied nothing.
                Status::Failed(why) => !ok && !why.starts_with("StoreConflict"),
                Status::Pending => !ok,
            })
            .filter_map(|op| match op.kind {
                OpKind::Create(config) => Some(config),
                _ => None,
            })
            .collect()
    };
    let (told, maybe) = (settings(true), settings(false));
    if told.len() > 1 {
        let told: Vec<String> = told.iter().map(|c| c.to_string()).collect();
        violations.push(format!("store {store}: creates with different settings were all told created: {told:?}"));
    }
    for (node, catalogue) in &finals.catalogues {
        match catalogue.get(store) {
            Some(config) if !told.is_empty() && !told.contains(config) => {
                violations.push(format!("store {store}: {node} serves it as {config}, callers were told otherwise"))
            }
            Some(config) if told.is_empty() && !maybe.contains(config) => {
                violations.push(format!("store {store}: {node} serves it as {config}, which no caller asked for"))
            }
            None if !told.is_empty() => {
                violations.push(format!("store {store}: {node} does not know it after the views converged"))
            }
            _ => {}
        }
    }
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
        let starts = ops.iter().filter(|op| op.kind.is_write() && (!acknowledged_only || op.status == Status::Ok));
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

/// Check 17: every view (of node `index`) holds, for each published entry, the web access its
/// node last published.
pub(crate) fn web_access_spread(views: &[(usize, &ClusterView)], published: &[&NodeInfo]) -> Vec<String> {
    let mut violations = Vec::new();
    for (index, view) in views {
        for info in published {
            let held = view.membership().node(&info.id).map(|n| &n.web);
            if held != Some(&info.web) {
                violations.push(format!(
                    "n{index} holds {}'s web access as {held:?}, the node last published {:?}",
                    info.id, info.web
                ));
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::raced_settings;

    fn create(config: StoreConfig, status: Status) -> Op {
        let name = StoreName::new("race-0").unwrap();
        Op { key: (name, Vec::new()), kind: OpKind::Create(config), seen: BTreeSet::new(), status, read: None }
    }

    /// The web access checker bites: a view that holds an older access of a node is reported,
    /// one that holds the last is not.
    #[test]
    fn a_view_behind_a_nodes_last_web_access_is_reported() {
        use quickv_core::identity::CertificateDigest;
        use quickv_core::membership::WebAccess;
        let old = NodeInfo::new("n1", "a:1", "z", 1).unwrap();
        let mut view = ClusterView::new(4);
        view.upsert_node(old.clone()).unwrap();
        let web = WebAccess::new(Some("a:2"), vec![CertificateDigest::of(b"browser")]).unwrap();
        let mut published = old.with_web(web);
        published.version += 1;
        let reported = web_access_spread(&[(0, &view)], &[&published]);
        assert_eq!(reported.len(), 1, "{reported:?}");
        assert!(reported[0].contains("n0 holds n1's web access"), "{reported:?}");
        view.upsert_node(published.clone()).unwrap();
        assert!(web_access_spread(&[(0, &view)], &[&published]).is_empty());
    }

    /// The create checker bites: two settings told "created", a node serving other settings,
    /// a node not knowing a created store.
    #[test]
    fn racing_creates_with_two_winners_are_reported() {
        let (a, b) = (raced_settings(false), raced_settings(true));
        let name = StoreName::new("race-0").unwrap();
        let n = |i: &str| NodeId::new(i).unwrap();
        let finals = Final {
            catalogues: vec![(n("n0"), BTreeMap::from([(name.clone(), a)])), (n("n1"), BTreeMap::new())],
            ..Final::default()
        };
        let history = [create(a, Status::Ok), create(b, Status::Ok)];
        let violations = check(&history, &finals, &[]);
        assert!(violations.iter().any(|v| v.contains("all told created")), "{violations:?}");
        assert!(violations.iter().any(|v| v.contains("does not know it")), "{violations:?}");
        let history = [create(b, Status::Ok), create(a, Status::Failed("StoreConflict: exists".into()))];
        let violations = check(&history, &finals, &[]);
        assert!(violations.iter().any(|v| v.contains("serves it as")), "{violations:?}");
        let history = [create(a, Status::Ok), create(b, Status::Failed("StoreConflict: exists".into()))];
        let finals = Final { catalogues: vec![(n("n0"), BTreeMap::from([(name, a)]))], ..Final::default() };
        assert_eq!(check(&history, &finals, &[]), Vec::<String>::new());
    }
}
