//! How `quickv cluster plan` shows a pending ring change.

use quickv_client::PlannedChange;
use serde_json::json;

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
    #[test]
    fn byte_counts_read_as_people_write_them() {
        assert_eq!(super::bytes(0), "0 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(3 * 1_048_576), "3.0 MiB");
        assert_eq!(super::bytes(5 * 1_073_741_824), "5.0 GiB");
    }
}
