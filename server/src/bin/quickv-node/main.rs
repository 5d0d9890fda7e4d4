//! `quickv-node`: run quickv nodes.
//!
//! - `quickv-node dev [--nodes 3] [--dir ./quickv-dev]`: a local cluster on loopback, in the
//!   foreground, with the durable engine; prints the line that points `quickv` at it.
//! - `quickv-node init --dir DIR`: create the cluster's CA and secret in DIR.
//! - `quickv-node run --dir DIR/NODE --ca-dir DIR --listen ADDR [--seeds ADDR,...] ...`: one node.
//!
//! Logs go to stderr. `QUICKV_LOG=debug` (or `trace`, `info`, `warn`, `error`) sets the level of
//! quickv's own logs (other crates, quinn's included, stay at `warn`); `QUICKV_LOG` or
//! `RUST_LOG` may also hold `RUST_LOG`-style directives (`RUST_LOG=quickv=debug,quinn=info`).
//! Default: quickv at `info`, other crates at `warn`.

/// mimalloc: the request path allocates per message, and glibc's allocator cost 8-15% of the
/// CPU under load. Built without transparent huge pages (feature `no_thp`): with them a node
/// held 65-91 MiB before any request (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use quickv_core::store::Limits;
use quickv_server::node::bounds::Bounds;
use quickv_server::node::http::AllowedOrigins;
use quickv_server::node::{Node, NodeConfig};
use quickv_server::pki;
use quickv_server::storage::{EngineKind, SyncPolicy};

#[derive(Parser)]
#[command(name = "quickv-node", version, about = "Run quickv nodes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a local cluster on loopback in the foreground (creates it on first start).
    Dev {
        /// How many nodes.
        #[arg(long, default_value_t = 3)]
        nodes: u16,
        /// The cluster folder (CA and one folder per node).
        #[arg(long, default_value = "./quickv-dev")]
        dir: PathBuf,
        /// Port of the first node; the others follow.
        #[arg(long, default_value_t = 7101)]
        base_port: u16,
        /// Port of the first node's Prometheus metrics (HTTP); the others follow (default: the
        /// base port + 100).
        #[arg(long)]
        metrics_port: Option<u16>,
        /// Port of the first node's HTTPS API; the others follow (default: the base port + 1000).
        #[arg(long)]
        http_port: Option<u16>,
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        web: WebArgs,
    },
    /// Create a cluster's certificate authority in DIR (ca.pem for clients, ca.key to issue node
    /// certificates) and its secret (cluster.secret, nodes only); adds what is missing to an
    /// existing cluster folder.
    Init {
        /// The cluster folder.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Run one node.
    Run(Box<RunArgs>),
}

/// How browsers reach the nodes.
#[derive(Args, Clone)]
struct WebArgs {
    /// Do not take WebTransport sessions (browsers) on the QUIC port.
    #[arg(long)]
    no_webtransport: bool,
    /// How long each browser certificate (WebTransport) is valid, in seconds; the node makes
    /// the next one at half of it and serves it from three quarters. 8 to 1,123,200 (13 days).
    #[arg(long, default_value_t = 10 * 24 * 3600)]
    browser_cert_lifetime_secs: u64,
}

fn apply_web(config: &mut NodeConfig, web: &WebArgs) {
    config.webtransport = !web.no_webtransport;
    config.browser_cert_lifetime = Duration::from_secs(web.browser_cert_lifetime_secs);
}

#[derive(Args, Clone)]
struct StorageArgs {
    /// Storage engine: durable (fjall, the default) or memory.
    #[arg(long, default_value = "durable")]
    engine: EngineKind,
    /// When a write is acknowledged: always (after fsync, the default) or os (after handing it to
    /// the operating system: survives a process crash, not a power loss).
    #[arg(long, default_value = "always")]
    sync: SyncPolicy,
    /// Longest key in bytes.
    #[arg(long, default_value_t = Limits::default().max_key)]
    max_key: usize,
    /// Largest value in bytes.
    #[arg(long, default_value_t = Limits::default().max_value)]
    max_value: usize,
    /// Connections a node keeps open at once, in all.
    #[arg(long, default_value_t = Bounds::default().connections)]
    max_connections: usize,
    /// Connections a node keeps open at once from one IP address.
    #[arg(long, default_value_t = Bounds::default().connections_per_address)]
    max_connections_per_address: usize,
    /// Request streams one connection may have open at once.
    #[arg(long, default_value_t = Bounds::default().streams_per_connection)]
    max_streams_per_connection: u32,
    /// Bytes of requests a node holds at once over all streams (at least one frame).
    #[arg(long, default_value_t = Bounds::default().buffered_bytes)]
    request_buffer: usize,
    /// Bytes of requests a node holds at once from one IP address (at least one frame).
    #[arg(long, default_value_t = Bounds::default().buffered_bytes_per_address)]
    request_buffer_per_address: usize,
    /// The most stores the cluster's catalogue takes through this node.
    #[arg(long, default_value_t = 1000)]
    max_stores: usize,
    /// Milliseconds a caller has to send a whole request.
    #[arg(long, default_value_t = Bounds::default().read_deadline.as_millis() as u64)]
    read_deadline_ms: u64,
    /// Milliseconds between anti-entropy comparisons with a peer, about (jittered); 0 switches
    /// anti-entropy off.
    #[arg(long, default_value_t = 1000)]
    anti_entropy_interval_ms: u64,
    /// Bytes per second anti-entropy may send, receive and read from storage.
    #[arg(long, default_value_t = 1024 * 1024)]
    anti_entropy_budget: u64,
    /// The most hints kept for one node that is away; past it (or past --max-hint-bytes or
    /// --max-hint-age-secs) a hinted write is stored without a hint, counted, and anti-entropy
    /// brings its key level.
    #[arg(long, default_value_t = 100_000)]
    max_hints: usize,
    /// The most bytes of hinted records kept for one node that is away.
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    max_hint_bytes: u64,
    /// The oldest hint kept, in seconds.
    #[arg(long, default_value_t = 3 * 3600)]
    max_hint_age_secs: u64,
    /// Hinted writes handed back to one returning node at once; 0 keeps hints without handing
    /// them back (anti-entropy still brings the node level).
    #[arg(long, default_value_t = 4)]
    hint_batch: usize,
    /// Bytes per second the replay of hints may send, across the nodes it hands hints back to.
    #[arg(long, default_value_t = 1024 * 1024)]
    hint_budget: u64,
    /// The share, in percent, of the hint and anti-entropy budgets that background work earns
    /// while the node serves requests (a get or a write in the last second); 100 never yields.
    #[arg(long, default_value_t = quickv_core::node::NodeConfig::DEFAULT_BUSY_BACKGROUND_PERCENT,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    busy_background_percent: u8,
    /// Wait for `quickv cluster commit` before the ring takes a membership change (joins,
    /// capacity changes); by default the claimant applies them as it sees them. Give it to
    /// every node: any of them may become the claimant.
    #[arg(long)]
    commit_ring_changes: bool,
    /// Seconds every node of a deleted key must hold its tombstone, checked twice, before it
    /// is collected; 0 keeps tombstones for ever. Must be longer than a message can stay in
    /// flight (a paused node's included).
    #[arg(long, default_value_t = 600)]
    tombstone_grace_secs: u64,
    /// Seconds between scrubs: reads of every record to find damaged ones before a request
    /// does (they are rebuilt from the other replicas); 0 never scrubs.
    #[arg(long, default_value_t = 24 * 3600)]
    scrub_interval_secs: u64,
}

#[derive(Args)]
struct RunArgs {
    /// The node's folder (certificate, data, saved cluster view).
    #[arg(long)]
    dir: PathBuf,
    /// The cluster folder made by `init` (ca.pem, and ca.key to issue this node's certificate).
    #[arg(long)]
    ca_dir: PathBuf,
    /// Address to listen on, for example 127.0.0.1:7101.
    #[arg(long)]
    listen: SocketAddr,
    /// Address others reach this node at (default: the listen address).
    #[arg(long)]
    advertise: Option<SocketAddr>,
    /// Nodes to join through (IP:port or host:port), comma separated; none for the first node.
    #[arg(long, value_delimiter = ',', value_parser = seed_address)]
    seeds: Vec<SocketAddr>,
    /// The node's zone.
    #[arg(long, default_value = "default")]
    zone: String,
    /// The node's capacity (its weight in the ring).
    #[arg(long, default_value_t = 1)]
    capacity: u32,
    /// The node's id (default: the name of its folder).
    #[arg(long)]
    id: Option<String>,
    /// Serve Prometheus metrics over HTTP at this address (any GET), for example
    /// 127.0.0.1:9101.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Serve the HTTPS API (docs/http-api.md) at this address, for example 0.0.0.0:8101.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// A browser origin the HTTPS API answers (CORS), for example https://app.example.com;
    /// repeat for several. Default: any origin.
    #[arg(long = "http-allow-origin", value_name = "ORIGIN")]
    http_allow_origins: Vec<String>,
    /// log2 of the partition count, for the first node of a new cluster.
    #[arg(long, default_value_t = quickv_core::ring::DEFAULT_PARTITION_BITS)]
    partition_bits: u8,
    #[command(flatten)]
    storage: StorageArgs,
    #[command(flatten)]
    web: WebArgs,
}

fn main() -> Result<()> {
    let filter = log_filter(std::env::var("QUICKV_LOG").ok(), std::env::var("RUST_LOG").ok())?;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Init { dir } => {
                let created = pki::init_cluster(&dir)?;
                let verb = if created { "now has" } else { "already has" };
                println!(
                    "{} {verb} a cluster CA and secret: give clients {}, keep {} and {} for nodes",
                    dir.display(),
                    dir.join(pki::CA_CERT).display(),
                    pki::CA_KEY,
                    pki::CLUSTER_SECRET
                );
                Ok(())
            }
            Command::Run(args) => run(*args).await,
            Command::Dev { nodes, dir, base_port, metrics_port, http_port, storage, web } => {
                let ports = DevPorts {
                    base: base_port,
                    metrics: metrics_port.unwrap_or(base_port.saturating_add(100)),
                    http: http_port.unwrap_or(base_port.saturating_add(1000)),
                };
                dev(nodes, dir, ports, storage, web).await
            }
        }
    })
}

/// The log filter: `QUICKV_LOG` (a bare level applies to quickv's own crates, other crates
/// staying at `warn`; anything else is a `RUST_LOG`-style list of directives), else `RUST_LOG`,
/// else quickv at `info` and other crates at `warn`.
fn log_filter(quickv_log: Option<String>, rust_log: Option<String>) -> Result<tracing_subscriber::EnvFilter> {
    const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
    let directives = match (quickv_log, rust_log) {
        (Some(level), _) if LEVELS.contains(&level.trim().to_ascii_lowercase().as_str()) => {
            format!("warn,quickv={}", level.trim().to_ascii_lowercase())
        }
        (Some(directives), _) => directives,
        (None, Some(directives)) => directives,
        (None, None) => "warn,quickv=info".to_owned(),
    };
    tracing_subscriber::EnvFilter::builder()
        .parse(&directives)
        .with_context(|| format!("invalid log filter {directives:?} (QUICKV_LOG or RUST_LOG)"))
}

fn apply_storage(config: &mut NodeConfig, storage: &StorageArgs) {
    config.engine = storage.engine;
    config.sync = storage.sync;
    config.limits = Limits { max_key: storage.max_key, max_value: storage.max_value };
    config.max_stores = storage.max_stores;
    config.anti_entropy_interval = Duration::from_millis(storage.anti_entropy_interval_ms);
    config.anti_entropy_budget = storage.anti_entropy_budget;
    config.max_hints = storage.max_hints;
    config.max_hint_bytes = storage.max_hint_bytes;
    config.max_hint_age = Duration::from_secs(storage.max_hint_age_secs);
    config.hint_batch = storage.hint_batch;
    config.hint_budget = storage.hint_budget;
    config.busy_background_percent = storage.busy_background_percent;
    config.automatic_ring_changes = !storage.commit_ring_changes;
    config.tombstone_grace = Duration::from_secs(storage.tombstone_grace_secs);
    config.scrub_interval = Duration::from_secs(storage.scrub_interval_secs);
    config.bounds = Bounds {
        connections: storage.max_connections,
        connections_per_address: storage.max_connections_per_address,
        streams_per_connection: storage.max_streams_per_connection,
        buffered_bytes: storage.request_buffer,
        buffered_bytes_per_address: storage.request_buffer_per_address,
        read_deadline: std::time::Duration::from_millis(storage.read_deadline_ms),
        ..config.bounds
    };
}

async fn run(args: RunArgs) -> Result<()> {
    let mut config = NodeConfig::new(&args.dir, &args.ca_dir, args.listen);
    config.advertise = args.advertise;
    config.seeds = args.seeds;
    config.zone = args.zone;
    config.capacity = args.capacity;
    config.id = args.id;
    config.partition_bits = args.partition_bits;
    config.metrics = args.metrics;
    config.http = args.http;
    if !args.http_allow_origins.is_empty() {
        config.http_origins = AllowedOrigins::Only(args.http_allow_origins);
    }
    apply_storage(&mut config, &args.storage);
    apply_web(&mut config, &args.web);
    let node = Node::start(config).await.with_context(|| format!("starting the node in {}", args.dir.display()))?;
    let refused = tokio::select! {
        () = wait_for_stop() => None,
        reason = node.join_refused() => Some(reason),
    };
    node.shutdown().await;
    match refused {
        Some(reason) => Err(anyhow::anyhow!("the cluster refused this node: {reason}")),
        None => Ok(()),
    }
}

/// The first port of each kind a dev cluster uses; node i takes the first + i.
struct DevPorts {
    base: u16,
    metrics: u16,
    http: u16,
}

async fn dev(count: u16, dir: PathBuf, ports: DevPorts, storage: StorageArgs, web: WebArgs) -> Result<()> {
    let DevPorts { base: base_port, metrics: metrics_port, http: http_port } = ports;
    anyhow::ensure!(count >= 1, "--nodes must be at least 1");
    pki::init_cluster(&dir).with_context(|| format!("creating the cluster CA in {}", dir.display()))?;
    // The printed line must work from any folder.
    let dir = std::fs::canonicalize(&dir).with_context(|| format!("finding the absolute path of {}", dir.display()))?;
    let first: SocketAddr = ([127, 0, 0, 1], base_port).into();
    let mut nodes = Vec::new();
    for i in 0..count {
        let addr: SocketAddr = ([127, 0, 0, 1], base_port + i).into();
        let mut config = NodeConfig::new(dir.join(format!("n{}", i + 1)), &dir, addr);
        config.zone = format!("zone-{}", i + 1);
        config.metrics = Some(([127, 0, 0, 1], metrics_port + i).into());
        config.http = Some(([127, 0, 0, 1], http_port + i).into());
        // A default store whose writes one or two nodes can meet.
        config.default_store = quickv_core::store::StoreConfig::quorum_for(usize::from(count));
        if i > 0 {
            config.seeds = vec![first];
        }
        apply_storage(&mut config, &storage);
        apply_web(&mut config, &web);
        let node = Node::start(config).await.with_context(|| format!("starting node n{} on {addr}", i + 1))?;
        nodes.push(node);
    }
    // Let the joins settle (every node in the ring, no ring change under way) so the printed
    // line works at once.
    for _ in 0..200 {
        let formed = nodes.iter().all(|n| {
            let view = n.view();
            view.membership().len() == usize::from(count)
                && view.transition().is_none()
                && view.ring().is_some_and(|r| r.nodes().len() == usize::from(count))
        });
        if formed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "quickv dev cluster: {count} node{} on 127.0.0.1:{base_port}..{}, data in {}",
        if count == 1 { "" } else { "s" },
        base_port + count - 1,
        dir.display()
    );
    println!(
        "metrics (Prometheus): http://127.0.0.1:{metrics_port}/metrics .. http://127.0.0.1:{}/metrics",
        metrics_port + count - 1
    );
    println!(
        "HTTPS API: https://127.0.0.1:{http_port} .. https://127.0.0.1:{} (trust ca.pem; see docs/http-api.md)",
        http_port + count - 1
    );
    if !web.no_webtransport {
        println!(
            "WebTransport (browsers): https://127.0.0.1:{base_port}/v1/webtransport .. https://127.0.0.1:{}/v1/webtransport (certificate hashes in GET /v1/ring)",
            base_port + count - 1
        );
    }
    println!("export QUICKV_SEEDS={first} QUICKV_CA={}", dir.join(pki::CA_CERT).display());
    wait_for_stop().await;
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM.
async fn wait_for_stop() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
    tracing::info!("stopping");
}

/// A seed as given to `--seeds`: `IP:port`, or `host:port` resolved now.
fn seed_address(seed: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let help = "give the IP:port (or host:port) a running node listens on, for example 127.0.0.1:7101";
    match seed.to_socket_addrs() {
        Ok(mut addrs) => addrs.next().ok_or_else(|| format!("{seed:?} resolves to no address: {help}")),
        Err(e) => Err(format!("{seed:?} is not a node address ({e}): {help}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_seed_addresses_say_what_to_give() {
        assert_eq!(seed_address("127.0.0.1:7101"), Ok(([127, 0, 0, 1], 7101).into()));
        assert_eq!(seed_address("localhost:7101").map(|a| a.port()), Ok(7101));
        for bad in ["nohost", "bad:seed", "127.0.0.1"] {
            let e = seed_address(bad).unwrap_err();
            assert!(e.contains("not a node address") && e.contains("for example 127.0.0.1:7101"), "{e}");
        }
    }

    #[test]
    fn log_filters_are_read_from_quickv_log_then_rust_log() {
        let bare = log_filter(Some("DEBUG".into()), Some("trace".into())).unwrap().to_string();
        assert!(bare.contains("quickv=debug") && bare.contains("warn"), "{bare}");
        let directives = log_filter(None, Some("quickv=trace,quinn=info".into())).unwrap().to_string();
        assert!(directives.contains("quickv=trace") && directives.contains("quinn=info"), "{directives}");
        let default = log_filter(None, None).unwrap().to_string();
        assert!(default.contains("quickv=info"), "{default}");
        let bad = log_filter(Some("quickv=loud".into()), None).unwrap_err();
        assert!(format!("{bad:#}").contains("invalid log filter"), "{bad:#}");
    }
}
