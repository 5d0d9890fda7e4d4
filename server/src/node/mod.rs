//! The node: a QUIC endpoint serving replica requests, coordinating for plain callers, and
//! keeping the cluster view in step with its peers.
//!
//! [`Node::start`] opens the storage engine and the endpoint, adds the node to its view, joins
//! through any seed, and then serves until [`Node::shutdown`]. One task per connection and one
//! per request feed core's machines and send what they emit ([`service`]); peers exchange whole
//! cluster views on every change and every [`NodeConfig::sync_interval`] ([`peers`]).

mod peers;
mod saved_view;
mod service;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use quickv_client::Topology;
use quickv_client::tls::{self, ClusterCa};
use quickv_client::transport::Transport;
use quickv_core::cluster::ClusterView;
use quickv_core::identity::NodeId;
use quickv_core::membership::{NodeInfo, NodeInfoError};
use quickv_core::ring::DEFAULT_PARTITION_BITS;
use quickv_core::store::Limits;
use tokio::task::JoinHandle;

use crate::pki::{self, PkiError};
use crate::replica::Replica;
use crate::storage::{self, EngineKind, StorageError, SyncPolicy};

/// How a node runs; [`NodeConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The node's folder: its certificate, its data and its saved cluster view.
    pub dir: PathBuf,
    /// The cluster folder holding `ca.pem` (and `ca.key`, to issue this node's certificate).
    pub ca_dir: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The address peers and clients reach this node at (default: `listen`).
    pub advertise: Option<SocketAddr>,
    /// Nodes to join through; empty for the first node of a cluster.
    pub seeds: Vec<SocketAddr>,
    /// The node's id (default: the name of its folder).
    pub id: Option<String>,
    /// The node's zone (default `default`).
    pub zone: String,
    /// The node's capacity, its weight in the ring (default 1).
    pub capacity: u32,
    /// The storage engine (default durable).
    pub engine: EngineKind,
    /// The sync policy of the durable engine (default [`SyncPolicy::Always`]).
    pub sync: SyncPolicy,
    /// Key and value limits (defaults: 64 KiB keys, 16 MiB values).
    pub limits: Limits,
    /// log2 of the ring's partition count, used when this node starts a new cluster (default 16).
    pub partition_bits: u8,
    /// How long a replica has to answer when this node coordinates (default 2 s).
    pub replica_timeout: Duration,
    /// How often the node exchanges its view with one peer (default 1 s).
    pub sync_interval: Duration,
}

impl NodeConfig {
    /// A configuration with the defaults.
    pub fn new(dir: impl Into<PathBuf>, ca_dir: impl Into<PathBuf>, listen: SocketAddr) -> NodeConfig {
        NodeConfig {
            dir: dir.into(),
            ca_dir: ca_dir.into(),
            listen,
            advertise: None,
            seeds: Vec::new(),
            id: None,
            zone: "default".into(),
            capacity: 1,
            engine: EngineKind::Durable,
            sync: SyncPolicy::Always,
            limits: Limits::default(),
            partition_bits: DEFAULT_PARTITION_BITS,
            replica_timeout: Duration::from_secs(2),
            sync_interval: Duration::from_secs(1),
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Certificates could not be made or loaded.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The TLS configuration is unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Storage could not be opened.
    #[error("cannot open storage: {0}")]
    Storage(#[from] StorageError),
    /// The node's id, zone or address is invalid.
    #[error("invalid node settings: {0}")]
    Info(#[from] NodeInfoError),
    /// The saved cluster view could not be read or written.
    #[error("cluster view file {path}: {reason}")]
    SavedView {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The endpoint could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Request counters, for operators and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Replica requests (get, mint, replicate) received from callers and peers.
    pub replica_requests: AtomicU64,
    /// Replica requests for a key this node is not a primary replica of in its ring.
    pub misrouted: AtomicU64,
    /// Requests this node coordinated for plain callers.
    pub coordinated: AtomicU64,
    /// Replica requests this node sent to other nodes while coordinating.
    pub forwarded: AtomicU64,
    /// Requests refused as malformed or over a limit.
    pub refused: AtomicU64,
}

impl Stats {
    /// A counter's current value.
    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What every task of a node shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) id: NodeId,
    pub(crate) config: NodeConfig,
    /// The cluster view with its routing data, replaced as a whole when the view changes, so
    /// requests share it instead of copying the view.
    pub(crate) topology: RwLock<Arc<Topology>>,
    pub(crate) replica: Replica,
    pub(crate) transport: Transport,
    pub(crate) stats: Stats,
    pub(crate) saved_view: saved_view::SavedView,
}

impl Shared {
    pub(crate) fn topology(&self) -> Arc<Topology> {
        self.topology.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn view(&self) -> ClusterView {
        self.topology().view().clone()
    }

    /// Applies `change` to the view; if it changed, saves it and tells every peer.
    pub(crate) fn update_view<T>(self: &Arc<Self>, change: impl FnOnce(&mut ClusterView) -> (bool, T)) -> T {
        let (changed, out, view) = {
            let mut topology = self.topology.write().unwrap_or_else(|p| p.into_inner());
            let mut view = topology.view().clone();
            let (changed, out) = change(&mut view);
            if changed {
                *topology = Arc::new(Topology::new(view.clone()));
            }
            (changed, out, view)
        };
        if changed {
            if let Err(e) = self.saved_view.save(&view) {
                tracing::error!("cannot save the cluster view: {e}");
            }
            peers::broadcast(self.clone(), view);
        }
        out
    }
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Node {
    /// Starts a node: storage, certificates, endpoint, then joining through the seeds in the
    /// background.
    pub async fn start(config: NodeConfig) -> Result<Node, StartError> {
        let id = config
            .id
            .clone()
            .or_else(|| config.dir.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "node".into());
        std::fs::create_dir_all(&config.dir)
            .map_err(|e| StartError::SavedView { path: config.dir.clone(), reason: e.to_string() })?;
        let ca = ClusterCa::from_pem_file(config.ca_dir.join(pki::CA_CERT))?;
        let identity = pki::node_identity(&config.dir, &config.ca_dir)?;
        let mut endpoint = quinn::Endpoint::server(pki::server_config(&ca, &identity)?, config.listen)
            .map_err(|source| StartError::Listen { addr: config.listen, source })?;
        endpoint.set_default_client_config(tls::client_config(&ca, Some(&identity))?);
        // Listening on port 0 picks a free port: advertise the one picked.
        let bound = endpoint.local_addr().unwrap_or(config.listen);
        let advertise = config.advertise.unwrap_or(bound);
        let mut info = NodeInfo::new(&id, &advertise.to_string(), &config.zone, config.capacity)?;
        let engine: Arc<dyn storage::Engine> = Arc::from(storage::open(config.engine, &config.dir, config.sync)?);

        let saved_view = saved_view::SavedView::new(config.dir.join(saved_view::FILE));
        let mut view = saved_view.load()?.unwrap_or_else(|| ClusterView::new(config.partition_bits));
        // A restarted node whose address, zone or capacity changed announces a newer entry.
        if let Some(known) = view.membership().node(&info.id) {
            let same = known.address == info.address && known.zone == info.zone && known.capacity == info.capacity;
            info.version = if same { known.version } else { known.version + 1 };
        }
        view.upsert_node(info.clone()).map_err(|e| StartError::SavedView {
            path: saved_view.path().to_owned(),
            reason: format!("cannot add this node to the saved view: {e}"),
        })?;
        saved_view.save(&view)?;

        let transport = Transport::new(endpoint.clone(), config.replica_timeout);
        let shared = Arc::new(Shared {
            id: info.id.clone(),
            replica: Replica::new(info.id.clone(), engine),
            topology: RwLock::new(Arc::new(Topology::new(view))),
            transport,
            stats: Stats::default(),
            saved_view,
            config,
        });
        let tasks = vec![
            tokio::spawn(service::accept(shared.clone(), endpoint)),
            tokio::spawn(peers::join_and_sync(shared.clone(), info)),
        ];
        tracing::info!(node = %shared.id, addr = %advertise, "node started");
        Ok(Node { shared, tasks })
    }

    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.shared.id
    }

    /// The address the node listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared.transport.endpoint().local_addr().ok()
    }

    /// The node's current cluster view.
    pub fn view(&self) -> ClusterView {
        self.shared.view()
    }

    /// The node's request counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Stops serving: closes connections, stops background tasks and flushes storage.
    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        let endpoint = self.shared.transport.endpoint().clone();
        endpoint.close(0u32.into(), b"node shutting down");
        let _ = tokio::time::timeout(Duration::from_millis(500), endpoint.wait_idle()).await;
        let engine = self.shared.replica.engine().clone();
        let _ = tokio::task::spawn_blocking(move || engine.flush()).await;
        // Wait (briefly) for request tasks to let go, so the socket is released on return.
        let id = self.shared.id.clone();
        let shared = Arc::downgrade(&self.shared);
        drop(self);
        drop(endpoint);
        for _ in 0..100 {
            if shared.strong_count() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!(node = %id, "node stopped");
    }
}
