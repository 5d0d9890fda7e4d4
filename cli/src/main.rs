//! `quickv`: the command-line tool of quickv.
//!
//! ```text
//! quickv [--seeds A,B] [--ca FILE] [--json] COMMAND
//!   put [--store S] KEY VALUE [--context TOKEN]    VALUE - reads stdin; prints the new context
//!   get [--store S] KEY                            the value byte for byte; exit status 1 when absent
//!   delete [--store S] KEY [--context TOKEN]
//!   locate [--store S] KEY                         token, primaries, fallbacks, what each holds
//!   store create NAME [--preset P] [--n N --r R --w W --quorum sloppy|strict --conflicts siblings|lww]
//!   store drop NAME
//!   store list
//!   status
//!   cluster plan | commit                          the pending ring change; apply it
//!   bench --workload load|a|b|c|d|ping [--via ADDR] [--plot FILE.svg]   load, percentiles (see `bench`)
//! ```
//!
//! KEY is text; with `--key-hex` it is hex digits, for keys that are not UTF-8.
//! Seeds and CA default to `QUICKV_SEEDS` and `QUICKV_CA` (what `quickv-node dev` prints).
//! Exit status: 0, 1 for a key `get` finds absent, 2 for an error, 141 when the reader of its
//! output went away (`quickv get k | head -c 1`), quietly, as a Unix tool stopped by SIGPIPE.

/// mimalloc: the request path allocates per message, and glibc's allocator cost 8-15% of the
/// CPU under load. Built without transparent huge pages (feature `no_thp`): with them a node
/// held 65-91 MiB before any request (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `println!`, but a failed write is the command's error instead of a panic: a reader that went
/// away (`quickv get k | head -c 1`) ends the command quietly (see `main`).
macro_rules! outln {
    ($($arg:tt)*) => {
        {
            use std::io::Write as _;
            writeln!(std::io::stdout(), $($arg)*)?
        }
    };
}

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Parser, Subcommand};
use quickv_client::{
    CausalContext, Client, ClusterCa, ConflictPolicy, Holding, NodeId, NodeStatus, Preset, QuorumKind, StoreConfig,
    StoreName,
};
use serde_json::json;

mod bench;
mod key;
mod ring_plan;
use key::KeyArg;

#[derive(Parser)]
#[command(name = "quickv", version, about = "Use a quickv cluster")]
struct Cli {
    /// Node addresses to reach the cluster through, comma separated.
    #[arg(long, env = "QUICKV_SEEDS", value_delimiter = ',', global = true)]
    seeds: Vec<String>,
    /// The cluster CA certificate (ca.pem).
    #[arg(long, env = "QUICKV_CA", global = true)]
    ca: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a value; prints the new causal context.
    Put {
        /// The store.
        #[arg(long, default_value = StoreName::DEFAULT)]
        store: String,
        #[command(flatten)]
        key: KeyArg,
        /// The value; `-` reads it from stdin.
        value: String,
        /// The context of the versions this write supersedes (from a get); none writes blind,
        /// which leaves any current value as a sibling.
        #[arg(long)]
        context: Option<CausalContext>,
    },
    /// Read a key: its value byte for byte on stdout (every sibling, one after the other, when
    /// there are several), sibling headers and the causal context on stderr.
    Get {
        /// The store.
        #[arg(long, default_value = StoreName::DEFAULT)]
        store: String,
        #[command(flatten)]
        key: KeyArg,
    },
    /// Delete a key (without --context: the versions a read finds now).
    Delete {
        /// The store.
        #[arg(long, default_value = StoreName::DEFAULT)]
        store: String,
        #[command(flatten)]
        key: KeyArg,
        /// The context of the versions to delete.
        #[arg(long)]
        context: Option<CausalContext>,
    },
    /// Create or list stores.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Look at the pending ring change, or commit it (for nodes run with --commit-ring-changes).
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Drain a node before stopping it, or remove one that is gone for good.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Every node: address, zone, capacity, state and share of the ring.
    Status,
    /// Load in the YCSB tradition (workloads load, a, b, c, d) and `ping`, the transport's
    /// ceiling: ops/s and latency percentiles, as a table or JSON, and a plot.
    Bench(bench::BenchArgs),
    /// Where a key lives: its token, its primaries and fallbacks, and what each of them holds.
    Locate {
        /// The store.
        #[arg(long, default_value = StoreName::DEFAULT)]
        store: String,
        #[command(flatten)]
        key: KeyArg,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// What the pending ring change moves: per node, the partitions it is a replica of now and
    /// after, those it gains and loses, and about how many bytes it receives.
    Plan,
    /// Apply the pending ring change, as `plan` shows it now.
    Commit,
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Drain a live node: it hands every partition to its new owners, then leaves the cluster
    /// (`status` shows it `leaving`, then `left`: then it may be stopped).
    Leave {
        /// The node's id.
        node: String,
    },
    /// Remove a node that is gone for good (stopped, its disk lost): its partitions are copied
    /// again from the surviving replicas. Refused while the cluster holds the node up.
    Remove {
        /// The node's id.
        node: String,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Create a store; its settings are fixed for life.
    Create {
        /// The store's name.
        name: String,
        /// Starting settings: eventual (N3 R1 W1), quorum (N3 R2 W2) or strict (N3 R2 W2, strict).
        #[arg(long, default_value = "quorum")]
        preset: Preset,
        /// Replication factor.
        #[arg(long)]
        n: Option<u8>,
        /// Read quorum.
        #[arg(long)]
        r: Option<u8>,
        /// Write quorum.
        #[arg(long)]
        w: Option<u8>,
        /// sloppy (fallbacks count, always writable) or strict.
        #[arg(long)]
        quorum: Option<QuorumKind>,
        /// siblings or lww.
        #[arg(long)]
        conflicts: Option<ConflictPolicy>,
    },
    /// List stores and their settings.
    List,
    /// Drop a store: it stops existing and its name is not used again (every node deletes its data).
    Drop {
        /// The store's name.
        name: String,
    },
}

/// The exit status of a command whose output nobody reads any more (its reader went away), as
/// a Unix tool killed by SIGPIPE reports: 128 + 13, and nothing on stderr.
const READER_GONE: u8 = 141;

/// Whether `error` comes from writing to a pipe whose reader went away.
fn reader_gone(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help, version, or a usage error: printed by clap, quietly if nobody reads it.
        Err(e) => {
            return match e.print() {
                Err(io) if io.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(READER_GONE),
                _ => ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2)),
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("quickv: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) if reader_gone(&e) => ExitCode::from(READER_GONE),
        Err(e) => {
            eprintln!("quickv: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn connect(cli: &Cli) -> Result<(Client, ClusterCa)> {
    if cli.seeds.is_empty() {
        bail!("no seeds: pass --seeds or set QUICKV_SEEDS (quickv-node dev prints the line)");
    }
    let Some(ca) = &cli.ca else { bail!("no CA: pass --ca or set QUICKV_CA (quickv-node dev prints the line)") };
    let ca = ClusterCa::from_pem_file(ca).with_context(|| {
        format!(
            "--ca {}: give the cluster's CA certificate, the ca.pem that quickv-node init (or dev) wrote in the cluster folder",
            ca.display()
        )
    })?;
    Ok((Client::builder().seeds(cli.seeds.clone()).ca_cert(ca.clone()).build().await?, ca))
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let (client, ca) = connect(&cli).await?;
    let code = match &cli.command {
        Command::Bench(args) => bench::run(&client, &ca, args.clone(), cli.json).await?,
        Command::Put { store, key, value, context } => {
            let value = if value == "-" {
                let mut buf = Vec::new();
                std::io::stdin().read_to_end(&mut buf).context("reading the value from stdin")?;
                buf
            } else {
                value.clone().into_bytes()
            };
            let store = client.store(store).await?;
            let context = store.put(key.bytes()?, value, &context.clone().unwrap_or_else(CausalContext::empty)).await?;
            if cli.json {
                outln!("{}", json!({ "key": key.shown(), "context": context.to_string() }));
            } else {
                outln!("{context}");
            }
            ExitCode::SUCCESS
        }
        Command::Get { store, key } => {
            let store = client.store(store).await?;
            let read = store.get(key.bytes()?).await?;
            if cli.json {
                let values: Vec<String> = read.values.iter().map(|v| BASE64.encode(v)).collect();
                outln!("{}", json!({ "key": key.shown(), "values": values, "context": read.context.to_string() }));
            } else if read.is_absent() {
                eprintln!("{}: not found", key.shown());
            } else {
                // The values byte for byte on stdout, nothing added; what describes them on stderr.
                let mut out = std::io::stdout().lock();
                let many = read.values.len() > 1;
                for (i, value) in read.values.iter().enumerate() {
                    if many {
                        out.flush()?;
                        eprintln!("-- sibling {} of {} ({} bytes) --", i + 1, read.values.len(), value.as_ref().len());
                    }
                    out.write_all(value.as_ref())?;
                }
                out.flush()?;
                eprintln!("context: {}", read.context);
            }
            if read.is_absent() { ExitCode::from(1) } else { ExitCode::SUCCESS }
        }
        Command::Delete { store, key, context } => {
            let store = client.store(store).await?;
            let bytes = key.bytes()?;
            let context = match context {
                Some(c) => c.clone(),
                None => store.get(&bytes).await?.context,
            };
            let after = store.delete(&bytes, &context).await?;
            if cli.json {
                outln!("{}", json!({ "key": key.shown(), "context": after.to_string() }));
            } else {
                outln!("{after}");
            }
            ExitCode::SUCCESS
        }
        Command::Cluster { command: ClusterCommand::Plan } => {
            let change = client.plan_ring_change().await?;
            ring_plan::print(change.as_ref(), cli.json)?;
            ExitCode::SUCCESS
        }
        Command::Cluster { command: ClusterCommand::Commit } => {
            let Some(change) = client.plan_ring_change().await? else {
                ring_plan::print(None, cli.json)?;
                return Ok(ExitCode::SUCCESS);
            };
            client.commit_ring_change(&change).await?;
            if cli.json {
                outln!("{}", json!({ "committed": true, "ring_epoch": change.plan.next.epoch }));
            } else {
                outln!("committed: the ring is at epoch {} (claimant {})", change.plan.next.epoch, change.claimant);
            }
            ExitCode::SUCCESS
        }
        Command::Node { command } => {
            let (id, leave) = match &command {
                NodeCommand::Leave { node } => (node, true),
                NodeCommand::Remove { node } => (node, false),
            };
            let node = NodeId::new(id).map_err(|e| anyhow::anyhow!("invalid node id {id:?}: {e}"))?;
            if leave {
                client.leave_node(&node).await?;
            } else {
                client.remove_node(&node).await?;
            }
            let done = if leave {
                "leaving: it hands its partitions to their new owners, then `quickv status` shows it left and it may be stopped"
            } else {
                "removed: its partitions are being copied again from the surviving replicas"
            };
            if cli.json {
                outln!("{}", json!({ "node": node.as_str(), "leaving": leave, "removed": !leave }));
            } else {
                outln!("{node} {done}");
            }
            ExitCode::SUCCESS
        }
        Command::Store { command: StoreCommand::Create { name, preset, n, r, w, quorum, conflicts } } => {
            let base = preset.config();
            let config = StoreConfig::new(
                n.unwrap_or(base.n() as u8),
                r.unwrap_or(base.r() as u8),
                w.unwrap_or(base.w() as u8),
                quorum.unwrap_or(base.quorum_kind()),
                conflicts.unwrap_or(base.conflicts()),
            )?;
            let name = StoreName::new(name)?;
            let created = client.create_store(&name, config).await?;
            // A store that needs more nodes than the cluster has works only partly for now.
            let nodes = client.view().membership().len();
            let warning = config.fit(nodes).err().or_else(|| config.fit(nodes).ok().flatten());
            if cli.json {
                let out = json!({ "store": name.as_str(), "config": config.to_string(), "created": created,
                                  "warning": warning });
                outln!("{out}");
            } else if created {
                outln!("created store {name}: {config}");
            } else {
                outln!("store {name} already exists with these settings: {config}");
            }
            if let (Some(warning), false) = (&warning, cli.json) {
                eprintln!("warning: store {name}: {warning}");
            }
            ExitCode::SUCCESS
        }
        Command::Store { command: StoreCommand::Drop { name } } => {
            let name = StoreName::new(name)?;
            client.drop_store(&name).await?;
            if cli.json {
                outln!("{}", json!({ "store": name.as_str(), "dropped": true }));
            } else {
                outln!("dropped store {name}");
            }
            ExitCode::SUCCESS
        }
        Command::Store { command: StoreCommand::List } => {
            let view = client.view();
            if cli.json {
                let stores: serde_json::Map<String, serde_json::Value> =
                    view.stores().map(|(n, c)| (n.to_string(), json!(c.to_string()))).collect();
                outln!("{}", json!({ "stores": stores }));
            } else {
                for (name, config) in view.stores() {
                    outln!("{name}\t{config}");
                }
            }
            ExitCode::SUCCESS
        }
        Command::Locate { store, key } => {
            let store = client.store(store).await?;
            let location = store.locate(key.bytes()?).await?;
            let view = client.view();
            let address = |id: &NodeId| view.membership().node(id).map(|n| n.address.clone()).unwrap_or_default();
            let holding = |h: &Holding| match h {
                Holding::Versions { count, tombstone: false } => format!("holds {count} version(s)"),
                Holding::Versions { count, tombstone: true } => format!("holds a delete ({count} version(s))"),
                Holding::Nothing => "holds nothing".to_owned(),
                Holding::Unknown => "did not answer".to_owned(),
            };
            if cli.json {
                let nodes = |list: &[(NodeId, Holding)]| -> Vec<serde_json::Value> {
                    list.iter()
                        .map(|(id, h)| {
                            let (count, tombstone) = match h {
                                Holding::Versions { count, tombstone } => (Some(*count), *tombstone),
                                _ => (None, false),
                            };
                            json!({ "id": id.as_str(), "address": address(id), "answered": *h != Holding::Unknown,
                                    "versions": count.unwrap_or(0), "tombstone": tombstone })
                        })
                        .collect()
                };
                let token = format!("{:032x}", location.token.0);
                outln!(
                    "{}",
                    json!({ "key": key.shown(), "store": store.name().as_str(), "token": token, "ring_epoch": location.epoch,
                            "primaries": nodes(&location.primaries), "fallbacks": nodes(&location.fallbacks),
                            "pending": nodes(&location.pending) })
                );
            } else {
                outln!(
                    "{} in store {}: token {:032x}, ring epoch {}",
                    key.shown(),
                    store.name(),
                    location.token.0,
                    location.epoch
                );
                let lists = [("primaries", &location.primaries), ("fallbacks", &location.fallbacks)];
                let pending = [("pending owners (a ring change is under way)", &location.pending)];
                let pending = pending.iter().filter(|(_, list)| !list.is_empty()).copied();
                for (title, list) in lists.into_iter().chain(pending) {
                    outln!("{title}:");
                    for (id, h) in list.iter() {
                        outln!("  {:<12} {:<22} {}", id.as_str(), address(id), holding(h));
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Command::Status => {
            let report = client.status().await?;
            let transfers = client.transfers().await;
            let view = &report.view;
            let shares: std::collections::HashMap<_, _> =
                view.ring().map(|r| r.shares().into_iter().collect()).unwrap_or_default();
            let epoch = view.ring().map_or(0, |r| r.epoch());
            let rows: Vec<_> = view
                .membership()
                .nodes()
                .map(|n| {
                    let share = shares.get(&n.id).copied().unwrap_or(0.0);
                    let peer = report.peer(&n.id);
                    // A member's own lifecycle state first; for members that are up, the verdict
                    // of the node asked.
                    let state = match (n.status, peer) {
                        (NodeStatus::Up, Some(peer)) => peer.state.to_string(),
                        (NodeStatus::Removed, _) => "left".to_owned(),
                        (status, _) => format!("{status:?}").to_lowercase(),
                    };
                    let state = ring_plan::member_state(view, &n.id, state);
                    let last_heard_ms = peer.and_then(|p| p.last_heard_ms);
                    let hints = peer.map_or(0, |p| p.hints);
                    (n, state, last_heard_ms, hints, share)
                })
                .collect();
            if cli.json {
                let nodes: Vec<_> = rows
                    .iter()
                    .map(|(n, state, last_heard_ms, hints, share)| {
                        json!({ "id": n.id.as_str(), "address": n.address, "zone": n.zone.as_str(),
                                "capacity": n.capacity, "state": state, "last_heard_ms": last_heard_ms,
                                "hints": hints, "share": share, "seen_by_self": n.id == report.node,
                                "https": n.web.https(),
                                "webtransport_certificates": n.web.webtransport().iter().map(|h| h.to_string()).collect::<Vec<_>>() })
                    })
                    .collect();
                let damage = json!({ "records": report.damage.records, "repaired": report.damage.repaired,
                                     "ranges": report.damage.ranges });
                outln!(
                    "{}",
                    json!({ "seen_by": report.node.as_str(), "ring_epoch": epoch, "nodes": nodes, "damage": damage,
                            "ring_change": ring_plan::change_json(view, &transfers) })
                );
            } else {
                outln!(
                    "{:<12} {:<22} {:<10} {:>8} {:<8} {:>10} {:>6} {:>7}",
                    "NODE",
                    "ADDRESS",
                    "ZONE",
                    "CAPACITY",
                    "STATE",
                    "LAST HEARD",
                    "HINTS",
                    "SHARE"
                );
                for (n, state, last_heard_ms, hints, share) in rows {
                    let heard = match last_heard_ms {
                        _ if n.id == report.node => "(asked)".to_string(),
                        Some(ms) => format!("{:.1}s ago", ms as f64 / 1000.0),
                        None => "never".to_string(),
                    };
                    outln!(
                        "{:<12} {:<22} {:<10} {:>8} {:<8} {:>10} {:>6} {:>6.1}%",
                        n.id.as_str(),
                        n.address,
                        n.zone.as_str(),
                        n.capacity,
                        state,
                        heard,
                        hints,
                        share * 100.0
                    );
                }
                outln!("as seen by {}; ring epoch {epoch}, {} stores", report.node, view.stores().count());
                if let Some(line) = ring_plan::change_line(view) {
                    outln!("{line}");
                    for line in ring_plan::transfer_lines(&transfers) {
                        outln!("{line}");
                    }
                }
                let damage = report.damage;
                if damage.records + damage.ranges > 0 {
                    outln!(
                        "storage damage at {} since it started: {} records found damaged ({} repaired), {} ranges \
                         it could not read (the other replicas serve them and anti-entropy rebuilds them)",
                        report.node,
                        damage.records,
                        damage.repaired,
                        damage.ranges
                    );
                }
            }
            ExitCode::SUCCESS
        }
    };
    // A read goes on after its answer, repairing stale replicas: let that finish (briefly).
    client.wait_idle(std::time::Duration::from_secs(2)).await;
    client.close();
    Ok(code)
}
