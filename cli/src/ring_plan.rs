//! How the tool shows ring changes: `quickv cluster plan`, and what `quickv status` adds while
//! one is under way.

use std::collections::BTreeMap;

use quickv_client::{ClusterView, NodeId, PlannedChange, TransferReport};
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

/// One line per node still receiving: partitions received of those it gains, bytes pulled, the
/// rate, and about how much is left.
pub fn transfer_lines(transfers: &BTreeMap<NodeId, Option<TransferReport>>) -> Vec<String> {
    transfers
        .iter()
        .map(|(id, report)| match report {
            None => format!("  {id}: receiving (no progress report: it did not answer)"),
            Some(r) => format!(
                "  {id}: {} of {} partitions received, {} received at {}/s, {} left",
                r.partitions_received,
                r.partitions_gained,
                bytes(r.bytes_received),
                bytes(r.bytes_per_second()),
                r.bytes_left_estimate().map_or_else(|| "unknown".to_owned(), |b| format!("about {}", bytes(b)))
            ),
        })
        .collect()
}

/// The same, as JSON (`null` when none is under way).
pub fn change_json(view: &ClusterView, transfers: &BTreeMap<NodeId, Option<TransferReport>>) -> serde_json::Value {
    match view.transition() {
        None => serde_json::Value::Null,
        Some(t) => json!({
            "to_epoch": t.next.epoch(),
            "gainers": t.gainers.iter().map(NodeId::as_str).collect::<Vec<_>>(),
            "received": t.received.iter().map(NodeId::as_str).collect::<Vec<_>>(),
            "transfers": transfers.iter().map(|(id, r)| json!({
                "node": id.as_str(),
                "partitions_gained": r.map(|r| r.partitions_gained),
                "partitions_received": r.map(|r| r.partitions_received),
                "keys_received": r.map(|r| r.keys_received),
                "bytes_received": r.map(|r| r.bytes_received),
                "bytes_per_sec": r.map(|r| r.bytes_per_second()),
                "bytes_left_estimate": r.and_then(|r| r.bytes_left_estimate()),
            })).collect::<Vec<_>>(),
        }),
    }
}

/// Prints `change` (`None`: nothing pending) as a table, or as one JSON object.
pub fn print(change: Option<&PlannedChange>, as_json: bool) -> std::io::Result<()> {
    let Some(change) = change else {
        if as_json {
            outln!("{}", json!({ "pending": false }));
        } else {
            outln!("no ring change pending: the ring matches the membership");
        }
        return Ok(());
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
        outln!("{out}");
        return Ok(());
    }
    let from = plan.current.map_or_else(|| "none".to_owned(), |v| v.epoch.to_string());
    let state = match change.under_way {
        Some((received, gainers)) => format!("under way ({received} of {gainers} new replicas have their partitions)"),
        None => "pending".to_owned(),
    };
    outln!(
        "ring change {state} at the claimant {}: epoch {from} -> {} ({} of {} partitions' replicas move, N={})",
        change.claimant,
        plan.next.epoch,
        plan.moves(),
        plan.partitions,
        plan.n
    );
    outln!("{:<14} {:>10} {:>10} {:>10} {:>10} {:>14}", "node", "replicas", "after", "gains", "loses", "receives ~");
    for n in &plan.nodes {
        let bytes = bytes(change.bytes_to_receive(&n.id));
        outln!("{:<14} {:>10} {:>10} {:>10} {:>10} {:>14}", n.id.as_str(), n.before, n.after, n.gained, n.lost, bytes);
    }
    if change.under_way.is_none() {
        outln!("apply it with: quickv cluster commit (nodes run with --commit-ring-changes wait for it)");
    }
    Ok(())
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
    use std::collections::BTreeMap;

    use quickv_client::{ClusterView, NodeId, NodeInfo, StoreConfig, StoreName};

    /// Issue 9, 2.4: while a ring change is under way a gainer that is up shows as joining
    /// until it has received its partitions, and status says how far the change is.
    #[test]
    fn a_node_receiving_its_partitions_shows_as_joining_with_its_progress() {
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
        let progress = quickv_client::TransferReport {
            epoch: 2,
            partitions_gained: 40,
            partitions_received: 10,
            keys_received: 100,
            bytes_received: 1_048_576,
            elapsed_ms: 2000,
        };
        let transfers = BTreeMap::from([(n3.clone(), Some(progress))]);
        let json = super::change_json(&view, &transfers);
        assert_eq!(json["gainers"], serde_json::json!(["n3"]));
        assert_eq!(json["transfers"][0]["bytes_left_estimate"], serde_json::json!(3 * 1_048_576));
        assert_eq!(json["transfers"][0]["bytes_per_sec"], serde_json::json!(524_288));
        let lines = super::transfer_lines(&transfers);
        assert_eq!(
            lines,
            ["  n3: 10 of 40 partitions received, 1.0 MiB received at 512.0 KiB/s, about 3.0 MiB left"],
            "{lines:?}"
        );
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
