//! How the tool shows ring changes: `quickv cluster plan`, and what `quickv status` adds while
//! one is under way.

use quickv_client::{ClusterView, NodeId, PlannedChange};
use serde_json::json;

/// A member's state as `quickv status` shows it: `joining` while it receives the partitions it
/// gains in the ring change under way (when the node asked holds it up), else `verdict`.
pub fn member_state(view: &ClusterView, id: &NodeId, verdict: String) -> String {
    match view.transition() {
        Some(t) if verdict == "up" && t.gainers.contains(id) && !t.received.contains(id) => "joining".to_owned(),
        _ => verdict,
    }
}

/// The line `quickv status` adds while a ring change is under way.
pub fn change_line(view: &ClusterView) -> Option<String> {
    let t = view.transition()?;
    let from = view.ring().map_or(0, |r| r.epoch());
    Some(format!(
        "ring change under way: epoch {from} -> {}, {} of {} new replicas have received their partitions",
        t.next.epoch(),
        t.received.len(),
        t.gainers.len()
    ))
}

/// The same, as JSON (`null` when none is under way).
pub fn change_json(view: &ClusterView) -> serde_json::Value {
    match view.transition() {
        None => serde_json::Value::Null,
        Some(t) => json!({
            "to_epoch": t.next.epoch(),
            "gainers": t.gainers.iter().map(NodeId::as_str).collect::<Vec<_>>(),
            "received": t.received.iter().map(NodeId::as_str).collect::<Vec<_>>(),
        }),
    }
}

/// Prints `change` (`None`: nothing pending) as a table, or as one JSON object.
pub fn print(change: Option<&PlannedChange>, as_json: bool) {
    let Some(change) = change else {
        if as_json {
            println!("{}", json!({ "pending": false }));
        } else {
            println!("no ring change pending: the ring matches the membership");
        }
        return;
    };
    let plan = &change.plan;
    if as_json {
        let nodes: Vec<_> = plan
            .nodes
            .iter()
            .map(|n| {
                json!({ "id": n.id.as_str(), "before": n.before, "after": n.after, "gained": n.gained,
                        "lost": n.lost, "bytes_to_receive": change.bytes_to_receive(&n.id),
                        "stored_bytes": change.stored_bytes.get(&n.id).copied().flatten() })
            })
            .collect();
        let under_way = change.under_way.map(|(received, gainers)| json!({ "received": received, "gainers": gainers }));
        let out = json!({ "pending": true, "under_way": under_way, "claimant": change.claimant.as_str(),
                          "from_epoch": plan.current.map(|v| v.epoch), "to_epoch": plan.next.epoch,
                          "n": plan.n, "partitions": plan.partitions, "moves": plan.moves(), "nodes": nodes });
        println!("{out}");
        return;
    }
    let from = plan.current.map_or_else(|| "none".to_owned(), |v| v.epoch.to_string());
    let state = match change.under_way {
        Some((received, gainers)) => format!("under way ({received} of {gainers} new replicas have their partitions)"),
        None => "pending".to_owned(),
    };
    println!(
        "ring change {state} at the claimant {}: epoch {from} -> {} ({} of {} partitions' replicas move, N={})",
        change.claimant,
        plan.next.epoch,
        plan.moves(),
        plan.partitions,
        plan.n
    );
    println!("{:<14} {:>10} {:>10} {:>10} {:>10} {:>14}", "node", "replicas", "after", "gains", "loses", "receives ~");
    for n in &plan.nodes {
        let bytes = bytes(change.bytes_to_receive(&n.id));
        println!(
            "{:<14} {:>10} {:>10} {:>10} {:>10} {:>14}",
            n.id.as_str(),
            n.before,
            n.after,
            n.gained,
            n.lost,
            bytes
        );
    }
    if change.under_way.is_none() {
        println!("apply it with: quickv cluster commit (nodes run with --commit-ring-changes wait for it)");
    }
}

/// A byte count for people: B, KiB, MiB, GiB.
fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", n as f64 / 1_048_576.0),
        _ => format!("{:.1} GiB", n as f64 / 1_073_741_824.0),
    }
}

#[cfg(test)]
mod tests {
    use quickv_client::{ClusterView, NodeId, NodeInfo, StoreConfig, StoreName};

    /// Issue 9, 2.4: while a ring change is under way a gainer that is up shows as joining
    /// until it has received its partitions, and status says how far the change is.
    #[test]
    fn a_node_receiving_its_partitions_shows_as_joining() {
        let mut view = ClusterView::new(6);
        let n0 = NodeId::new("n0").unwrap();
        for i in 0..3 {
            view.upsert_node(NodeInfo::new(&format!("n{i}"), &format!("127.0.0.1:{}", 7100 + i), "z", 1).unwrap())
                .unwrap();
        }
        view.create_store(StoreName::default_store(), StoreConfig::quorum()).unwrap();
        view.advance_ring(&n0).unwrap();
        assert_eq!(super::change_line(&view), None);
        view.upsert_node(NodeInfo::new("n3", "127.0.0.1:7103", "z", 1).unwrap()).unwrap();
        view.advance_ring(&n0).unwrap();
        let n3 = NodeId::new("n3").unwrap();
        assert_eq!(super::member_state(&view, &n3, "up".into()), "joining");
        assert_eq!(super::member_state(&view, &n3, "down".into()), "down");
        assert_eq!(super::member_state(&view, &n0, "up".into()), "up");
        let line = super::change_line(&view).unwrap();
        assert!(line.contains("epoch 1 -> 2, 0 of 1 new replicas"), "{line}");
        assert_eq!(super::change_json(&view)["gainers"], serde_json::json!(["n3"]));
        let next = view.transition().unwrap().next.version();
        view.note_received(next, &n3);
        assert_eq!(super::member_state(&view, &n3, "up".into()), "up");
    }

    #[test]
    fn byte_counts_read_as_people_write_them() {
        assert_eq!(super::bytes(0), "0 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(3 * 1_048_576), "3.0 MiB");
        assert_eq!(super::bytes(5 * 1_073_741_824), "5.0 GiB");
    }
}
