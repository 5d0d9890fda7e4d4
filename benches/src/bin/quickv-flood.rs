//! `quickv-flood`: what a caller without a certificate can make a node hold (issue 7, 3.4).
//!
//! Opens `--connections` connections to one node and, on each, as many request streams as the
//! node lets it, then sends on every stream without ever finishing a request: slowly (`--mode
//! slow`, 1 KiB every 100 ms) or as fast as flow control allows (`--mode huge`). Meanwhile a smart
//! caller puts and gets one key every 100 ms. Prints, every second, the node's resident memory
//! (from `/proc/PID/status`, with `--pid`), the streams the flood holds open and the probe's
//! successes, and at the end the peak memory and the probe's success rate. The flood comes from
//! 127.0.0.1 and the probe from 127.0.0.2, two callers as the node counts them.
//!
//! ```text
//! quickv-node init --dir /tmp/flood && quickv-node run --dir /tmp/flood/n1 --ca-dir /tmp/flood \
//!     --listen 127.0.0.1:7301 &
//! quickv-flood --node 127.0.0.1:7301 --ca /tmp/flood/ca.pem --pid $! --mode huge --seconds 20
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use quickv_client::transport::Transport;
use quickv_client::{CausalContext, Client, ClusterCa, ConflictPolicy, QuorumKind, StoreConfig, StoreName, tls};
use quickv_core::version::Write;
use quickv_core::wire::{Request, Response};

#[derive(Parser)]
#[command(name = "quickv-flood", about = "Floods one quickv node with unfinished requests and watches it")]
struct Args {
    /// The node.
    #[arg(long)]
    node: SocketAddr,
    /// The cluster CA certificate.
    #[arg(long)]
    ca: PathBuf,
    /// The node's process id, to sample its resident memory.
    #[arg(long)]
    pid: Option<u32>,
    /// Connections to open.
    #[arg(long, default_value_t = 300)]
    connections: usize,
    /// Streams to try on each connection (the node admits at most its bound).
    #[arg(long, default_value_t = 300)]
    streams: usize,
    /// slow: 1 KiB every 100 ms per stream; huge: as fast as flow control allows.
    #[arg(long, value_enum, default_value_t = Mode::Huge)]
    mode: Mode,
    /// How long to flood.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Slow,
    Huge,
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let ca = ClusterCa::from_pem_file(&args.ca)?;
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let open = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));

    // The probe: a well-behaved caller from another address (127.0.0.2), asking the node to
    // coordinate a put and a get on a store of one replica.
    let client = Client::builder().seeds([args.node.to_string()]).ca_cert(ca.clone()).build().await?;
    let one = StoreName::new("flood-probe")?;
    let config = StoreConfig::new(1, 1, 1, QuorumKind::Strict, ConflictPolicy::Siblings)?;
    client.create_store(&one, config).await.context("creating the probe store")?;
    client.close();
    let probe_transport =
        Transport::client(tls::client_config(&ca, None)?, "127.0.0.2:0".parse()?, Duration::from_secs(2))?;
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let probe = {
        let (ok, failed, node) = (ok.clone(), failed.clone(), args.node);
        tokio::spawn(async move {
            while Instant::now() < end {
                let write = Write::put(b"v".to_vec(), CausalContext::empty(), 1);
                let put = Request::CoordinatePut { store: one.clone(), key: b"probe".to_vec(), write, minter: None };
                let get = Request::CoordinateGet { store: one.clone(), key: b"probe".to_vec() };
                let served = matches!(probe_transport.call(node, None, put).await, Ok(Response::State(Some(_))))
                    && matches!(probe_transport.call(node, None, get).await, Ok(Response::State(Some(_))));
                let counter = if served { &ok } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // The flood.
    for _ in 0..args.connections {
        let (ca, open, refused) = (ca.clone(), open.clone(), refused.clone());
        let (node, streams, mode) = (args.node, args.streams, args.mode);
        tokio::spawn(async move {
            let Ok(config) = tls::client_config(&ca, None) else { return };
            let Ok(mut endpoint) = quinn::Endpoint::client("127.0.0.1:0".parse().expect("an address")) else { return };
            endpoint.set_default_client_config(config);
            let Ok(connecting) = endpoint.connect(node, tls::NODE_SERVER_NAME) else { return };
            let Ok(connection) = connecting.await else {
                refused.fetch_add(1, Ordering::Relaxed);
                return;
            };
            for _ in 0..streams {
                let Ok(Ok((mut send, _recv))) =
                    tokio::time::timeout(Duration::from_millis(200), connection.open_bi()).await
                else {
                    break;
                };
                let open = open.clone();
                tokio::spawn(async move {
                    open.fetch_add(1, Ordering::Relaxed);
                    // A frame that never ends: a version byte, then filler.
                    let chunk = vec![2u8; if matches!(mode, Mode::Huge) { 64 * 1024 } else { 1024 }];
                    while Instant::now() < end {
                        if send.write_all(&chunk).await.is_err() {
                            break;
                        }
                        if matches!(mode, Mode::Slow) {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                    open.fetch_sub(1, Ordering::Relaxed);
                    let _keep = _recv;
                });
            }
            tokio::time::sleep_until(end.into()).await;
            drop(connection);
        });
    }

    let mut peak = 0f64;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = args.pid.and_then(rss_mib);
        if let Some(rss) = rss {
            peak = peak.max(rss);
        }
        println!(
            "rss {} MiB, streams held {}, connections refused {}, probe ok {} failed {}",
            rss.map_or("?".into(), |r| format!("{r:.0}")),
            open.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed),
            ok.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed)
        );
    }
    let _ = probe.await;
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "peak rss {peak:.0} MiB; probe {ok} ok, {failed} failed ({:.0}% served)",
        100.0 * ok as f64 / (ok + failed).max(1) as f64
    );
    Ok(())
}
