//! `quickv-load`: a first baseline load tool. Writes then reads `--ops` keys with `--concurrency`
//! requests in flight against a running cluster, either through the smart client (straight to
//! the replicas) or through one node coordinating for a plain caller, and prints ops/s, p50 and
//! p99 for each phase, and how many keys a get phase found absent (it then fails). `--prefix` and
//! `--phases get` read back what an earlier run wrote.
//!
//! ```text
//! quickv-node dev --dir /tmp/load &              # 3 nodes, default store N=3 R=2 W=2
//! quickv-load --seeds 127.0.0.1:7101 --ca /tmp/load/ca.pem --mode smart
//! quickv-load --seeds 127.0.0.1:7101 --ca /tmp/load/ca.pem --mode coordinated
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use quickv_client::transport::Transport;
use quickv_client::{CausalContext, Client, ClusterCa, tls};
use quickv_core::store::StoreName;
use quickv_core::version::Write;
use quickv_core::wire::{Request, Response};
use tokio::sync::Semaphore;

#[derive(Parser)]
#[command(name = "quickv-load", about = "Baseline put/get load against a quickv cluster")]
struct Args {
    /// A node address.
    #[arg(long, env = "QUICKV_SEEDS", value_delimiter = ',')]
    seeds: Vec<SocketAddr>,
    /// The cluster CA certificate.
    #[arg(long, env = "QUICKV_CA")]
    ca: PathBuf,
    /// smart: the client routes to replicas; coordinated: one node coordinates every request.
    #[arg(long, value_enum, default_value_t = Mode::Smart)]
    mode: Mode,
    /// Requests per phase.
    #[arg(long, default_value_t = 20_000)]
    ops: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// The store.
    #[arg(long, default_value = "default")]
    store: String,
    /// Keys are PREFIX-0, PREFIX-1, ...; by default a prefix of this run's own, so that a get
    /// phase in another run can read what this one wrote only when given the same prefix.
    #[arg(long)]
    prefix: Option<String>,
    /// The phases to run, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Phase::Put, Phase::Get])]
    phases: Vec<Phase>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    Put,
    Get,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Smart,
    Coordinated,
}

enum Target {
    Smart(quickv_client::Store),
    Coordinated(Transport, SocketAddr, StoreName),
}

impl Target {
    async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        match self {
            Target::Smart(store) => {
                store.put(key, value, &CausalContext::empty()).await?;
            }
            Target::Coordinated(transport, addr, store) => {
                let write = Write::put(value, CausalContext::empty(), now_millis());
                let request = Request::CoordinatePut { store: store.clone(), key, write, minter: None };
                match transport.call(*addr, None, request).await? {
                    Response::State(Some(_)) => {}
                    other => bail!("put failed: {other:?}"),
                }
            }
        }
        Ok(())
    }

    /// Whether the key is present.
    async fn get(&self, key: Vec<u8>) -> Result<bool> {
        match self {
            Target::Smart(store) => Ok(!store.get(key).await?.is_absent()),
            Target::Coordinated(transport, addr, store) => {
                let request = Request::CoordinateGet { store: store.clone(), key };
                match transport.call(*addr, None, request).await? {
                    Response::State(Some(s)) => Ok(!s.siblings.is_absent()),
                    Response::State(None) => Ok(false),
                    other => bail!("get failed: {other:?}"),
                }
            }
        }
    }
}

fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let ca = ClusterCa::from_pem_file(&args.ca)?;
    let seed = *args.seeds.first().context("give --seeds")?;
    let target = Arc::new(match args.mode {
        Mode::Smart => {
            let client = Client::builder().seeds(args.seeds.iter().map(|s| s.to_string())).ca_cert(ca).build().await?;
            Target::Smart(client.store(&args.store).await?)
        }
        Mode::Coordinated => {
            let config = tls::client_config(&ca, None)?;
            let transport = Transport::client(config, ([0, 0, 0, 0], 0).into(), Duration::from_secs(10))?;
            Target::Coordinated(transport, seed, StoreName::new(&args.store)?)
        }
    });
    let prefix = args.prefix.clone().unwrap_or_else(|| format!("load-{}", now_millis()));
    let value = vec![0x5a; args.value_size];
    let mut absent = 0usize;
    for &phase in &args.phases {
        let permits = Arc::new(Semaphore::new(args.concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        let started = Instant::now();
        for i in 0..args.ops {
            let permit = permits.clone().acquire_owned().await?;
            let (target, value) = (target.clone(), value.clone());
            let key = format!("{prefix}-{i}").into_bytes();
            tasks.spawn(async move {
                let t = Instant::now();
                let present = match phase {
                    Phase::Put => target.put(key, value).await.map(|()| true),
                    Phase::Get => target.get(key).await,
                };
                drop(permit);
                present.map(|present| (t.elapsed(), present))
            });
        }
        let mut latencies = Vec::with_capacity(args.ops);
        let mut phase_absent = 0usize;
        while let Some(done) = tasks.join_next().await {
            let (took, present) = done??;
            latencies.push(took);
            phase_absent += usize::from(!present);
        }
        absent += phase_absent;
        let elapsed = started.elapsed();
        latencies.sort();
        let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        let name = if phase == Phase::Put { "put" } else { "get" };
        let missing = if phase == Phase::Get { format!(", {phase_absent} absent") } else { String::new() };
        println!(
            "{name}: {} ops in {:.2}s = {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms{missing}",
            args.ops,
            elapsed.as_secs_f64(),
            args.ops as f64 / elapsed.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3
        );
    }
    anyhow::ensure!(absent == 0, "{absent} written keys are absent");
    Ok(())
}
