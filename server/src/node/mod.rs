//! The node process: a QUIC endpoint and a storage engine around core's node machine.
//!
//! Every decision (what to answer, whom to ask, what to store, when to exchange views) is made
//! by [`quickv_core::node::Node`]. This module is the glue around it, in four parts: the
//! [`endpoint`] reads requests off QUIC streams, the [`driver`] task owns the machine and
//! performs what it emits (answers, requests to peers, storage [`steps`], view saves in order;
//! record loads it runs itself), the [`committer`] thread runs record writes (one batch and one
//! sync at a time), and [`saved_view`] is the view file. [`http`] serves the HTTPS API,
//! handing each request to the driver as the endpoint does.

pub mod bounds;
pub mod browser_cert;
mod committer;
mod driver;
pub(crate) mod endpoint;
pub mod http;
mod incarnation;
pub mod metrics;
mod saved_view;
mod small_file;
mod steps;

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use quickv_core::cluster::ClusterView;
use quickv_core::identity::NodeId;
use quickv_core::membership::{NodeInfo, NodeInfoError, WebAccess, WebAccessError};
use quickv_core::node::NodeError;
pub use quickv_core::node::NodeStats;
use quickv_core::ring::DEFAULT_PARTITION_BITS;
use quickv_core::store::{Limits, StoreConfig};
use quickv_net::tls::{self, ClusterCa};
use quickv_net::transport::Transport;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::pki::{self, PkiError};
use crate::storage::{self, EngineKind, StorageError, SyncPolicy};
use bounds::Bounds;

/// How long a stopping node waits for the view saves queued when its driver stopped.
const SAVER_DRAIN: Duration = Duration::from_secs(10);

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
    /// Key and value limits (defaults: 65,535-byte keys, the most the engine takes; 16 MiB values).
    pub limits: Limits,
    /// log2 of the ring's partition count, used when this node starts a new cluster (default 16).
    pub partition_bits: u8,
    /// How long a replica has to answer when this node coordinates (default 2 s).
    pub replica_timeout: Duration,
    /// How often the node exchanges its view with one peer (default 1 s).
    pub sync_interval: Duration,
    /// What callers may hold: connections, streams, bytes being read, time to send.
    pub bounds: Bounds,
    /// The most stores the cluster's catalogue takes through this node (default 1,000).
    pub max_stores: usize,
    /// How far ahead of this node's clock a last-writer-wins timestamp may be (default 60 s).
    pub max_clock_skew: Duration,
    /// The settings of the `default` store, created when this node founds a cluster (no seeds,
    /// no saved view): the `quorum` preset by default.
    pub default_store: StoreConfig,
    /// Where to serve Prometheus metrics over HTTP (default: nowhere; see [`metrics`]).
    pub metrics: Option<SocketAddr>,
    /// Where to serve the HTTPS API (default: nowhere; see [`http`] and `docs/http-api.md`).
    pub http: Option<SocketAddr>,
    /// The browser origins the HTTPS API answers (CORS) and the QUIC port takes WebTransport
    /// sessions from (default any).
    pub http_origins: http::AllowedOrigins,
    /// Whether the QUIC endpoint also takes browsers' WebTransport sessions (ALPN `h3`, at
    /// `https://ADDRESS/v1/webtransport`), served with short-lived certificates the node makes
    /// and rotates (default yes; see [`browser_cert`]).
    pub webtransport: bool,
    /// How long each browser certificate is valid (default 10 days; 8 s to 13 days).
    pub browser_cert_lifetime: Duration,
    /// How often, about, the node compares its Merkle trees of a store with a peer (default 1 s;
    /// zero switches anti-entropy off).
    pub anti_entropy_interval: Duration,
    /// Bytes per second anti-entropy may send, receive and read (default 1 MiB/s).
    pub anti_entropy_budget: u64,
    /// The most hints kept for one target (default 100,000); past it, or past `max_hint_bytes`
    /// or `max_hint_age`, a hinted write is stored without a hint and counted, and
    /// anti-entropy brings its key level. See `quickv_core::node::NodeConfig::max_hints`.
    pub max_hints: usize,
    /// The most bytes of hinted records kept for one target (default 256 MiB).
    pub max_hint_bytes: u64,
    /// The oldest hint kept (default 3 hours).
    pub max_hint_age: Duration,
    /// Hinted writes in flight to one primary at once while hints are handed back (default 4;
    /// zero keeps hints without handing them back, leaving the primaries to anti-entropy).
    pub hint_batch: usize,
    /// Bytes per second the replay of hints may send, across its targets (default 1 MiB/s).
    pub hint_budget: u64,
    /// The share, in percent, of `hint_budget` and `anti_entropy_budget` that background work
    /// earns while the node serves requests (default 6; 100: never yields). See
    /// `quickv_core::node::NodeConfig::busy_background_percent`.
    pub busy_background_percent: u8,
    /// Whether the ring takes membership changes (joins, capacity changes) as soon as the
    /// claimant sees them (default), or only when an operator commits the plan (`quickv cluster
    /// commit`). See `quickv_core::node::NodeConfig::automatic_ring_changes`.
    pub automatic_ring_changes: bool,
    /// How long every node of a deleted key must hold its tombstone, checked twice, before it
    /// is collected (default 10 minutes; zero: tombstones are kept for ever). See
    /// `quickv_core::node::NodeConfig::tombstone_grace`.
    pub tombstone_grace: Duration,
    /// How often the node reads all its records to find damaged ones before a request does
    /// (default 1 day; zero: never). See `quickv_core::node::NodeConfig::scrub_interval`.
    pub scrub_interval: Duration,
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
            bounds: Bounds::default(),
            max_stores: 1000,
            max_clock_skew: Duration::from_secs(60),
            default_store: StoreConfig::quorum(),
            metrics: None,
            http: None,
            http_origins: http::AllowedOrigins::Any,
            webtransport: true,
            browser_cert_lifetime: browser_cert::DEFAULT_LIFETIME,
            anti_entropy_interval: Duration::from_secs(1),
            anti_entropy_budget: 1024 * 1024,
            max_hints: 100_000,
            max_hint_bytes: 256 * 1024 * 1024,
            max_hint_age: Duration::from_secs(3 * 3600),
            hint_batch: 4,
            hint_budget: 1024 * 1024,
            busy_background_percent: quickv_core::node::NodeConfig::DEFAULT_BUSY_BACKGROUND_PERCENT,
            automatic_ring_changes: true,
            tombstone_grace: Duration::from_secs(600),
            scrub_interval: Duration::from_secs(24 * 3600),
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
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
    /// This node left the cluster (or was removed): its folder does not start again.
    #[error("{0}")]
    Left(NodeError),
    /// The bounds are unusable.
    #[error("invalid bounds: {0}")]
    Bounds(#[from] bounds::BoundsError),
    /// The key or value limits are unusable.
    #[error("invalid limits: {0}")]
    Limits(#[from] quickv_core::store::LimitError),
    /// The incarnation file could not be read or written.
    #[error("incarnation file {path}: {reason}")]
    Incarnation {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The node's storage threads could not be started.
    #[error("cannot start the storage threads: {source}")]
    Threads {
        /// The I/O error.
        source: std::io::Error,
    },
    /// The browser certificates could not be loaded, made or saved.
    #[error(transparent)]
    BrowserCert(#[from] browser_cert::BrowserCertError),
    /// The node's web access is not publishable (an HTTPS address that is not a name).
    #[error("invalid web access: {0}")]
    Web(#[from] WebAccessError),
    /// The HTTPS API could not listen.
    #[error("cannot serve the HTTPS API on {addr}: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
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

/// Unidirectional streams a WebTransport peer may open at once (HTTP/3's control stream, the
/// two QPACK streams, and room to spare).
const WEBTRANSPORT_UNI_STREAMS: u32 = 8;

/// A running node.
#[derive(Debug)]
pub struct Node {
    id: NodeId,
    incarnation: u64,
    incarnations: incarnation::IncarnationFile,
    endpoint: quinn::Endpoint,
    transport: Weak<Transport>,
    engine: Arc<dyn storage::Engine>,
    observed: Arc<driver::Observed>,
    tasks: Vec<JoinHandle<()>>,
    /// The view saver: left to finish at shutdown, not aborted.
    saver: JoinHandle<()>,
    /// Where the HTTPS API listens, if it does.
    http: Option<SocketAddr>,
}

impl Node {
    /// Starts a node: storage, certificates, endpoint, and the node machine, which saves the
    /// view with this node in it and joins through the seeds in the background.
    pub async fn start(config: NodeConfig) -> Result<Node, StartError> {
        let id = config
            .id
            .clone()
            .or_else(|| config.dir.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "node".into());
        config.limits.validate()?;
        config.bounds.validate(config.limits.max_frame())?;
        std::fs::create_dir_all(&config.dir)
            .map_err(|e| StartError::SavedView { path: config.dir.clone(), reason: e.to_string() })?;
        let ca = ClusterCa::from_pem_file(config.ca_dir.join(pki::CA_CERT))?;
        let addresses: Vec<std::net::IpAddr> =
            [Some(config.listen), config.advertise, config.http].into_iter().flatten().map(|a| a.ip()).collect();
        let identity = pki::node_identity(&config.dir, &config.ca_dir, &addresses)?;
        let secret = pki::cluster_secret(&config.dir, &config.ca_dir)?;
        let mut transport = quickv_net::transport::transport_config();
        transport.max_concurrent_bidi_streams(config.bounds.streams_per_connection.into());
        transport.receive_window(config.bounds.receive_window.into());
        transport.stream_receive_window(config.bounds.receive_window.into());
        if config.webtransport {
            // HTTP/3 opens unidirectional streams (its control and QPACK streams) each way; the
            // native protocol opens none. What a peer sends on them stays within the
            // connection's receive window.
            transport.max_concurrent_uni_streams(WEBTRANSPORT_UNI_STREAMS.into());
        }
        let listen_error = |source| StartError::Listen { addr: config.listen, source };
        let socket = std::net::UdpSocket::bind(config.listen).map_err(listen_error)?;
        let browser = match config.webtransport {
            true => {
                let certs = browser_cert::BrowserCertificates::open(
                    &config.dir,
                    config.browser_cert_lifetime,
                    browser_cert::unix_now(),
                )?;
                let node_key = rustls::sign::CertifiedKey::from_der(
                    identity.chain.clone(),
                    identity.key.clone_key(),
                    &quickv_net::tls::provider(),
                )
                .map_err(|e| tls::TlsError::Quic(e.to_string()))?;
                let resolver = Arc::new(browser_cert::CertificateByProtocol::new(Arc::new(node_key)));
                resolver.set_browser(certs.served()?);
                Some((certs, resolver))
            }
            false => None,
        };
        let mut endpoint = quinn::Endpoint::new(
            quickv_net::transport::endpoint_config(identity.key.secret_der()),
            Some(pki::server_config(&ca, &identity, transport, browser.as_ref().map(|(_, r)| r.clone()))?),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(listen_error)?;
        endpoint.set_default_client_config(tls::client_config(&ca, Some(&identity))?);
        // Listening on port 0 picks a free port: advertise the one picked.
        let bound = endpoint.local_addr().unwrap_or(config.listen);
        let advertise = config.advertise.unwrap_or(bound);
        let http_listener = match config.http {
            Some(addr) => {
                let http_error = |source| StartError::Http { addr, source };
                let listener = std::net::TcpListener::bind(addr).map_err(http_error)?;
                listener.set_nonblocking(true).map_err(http_error)?;
                let local = listener.local_addr().map_err(http_error)?;
                Some((tokio::net::TcpListener::from_std(listener).map_err(http_error)?, local))
            }
            None => None,
        };
        // Callers reach the HTTPS API at the advertised host when it listens on every address.
        let https = http_listener.as_ref().map(|(_, local)| match local.ip().is_unspecified() {
            true => SocketAddr::new(advertise.ip(), local.port()).to_string(),
            false => local.to_string(),
        });
        let hashes = browser.as_ref().map(|(certs, _)| certs.hashes()).unwrap_or_default();
        let web = WebAccess::new(https.as_deref(), hashes)?;
        let info = NodeInfo::new(&id, &advertise.to_string(), &config.zone, config.capacity)?
            .with_certificate(identity.certificate_digest())
            .with_web(web.clone());
        let opened = storage::open(config.engine, &config.dir, config.sync)?;
        let engine: Arc<dyn storage::Engine> = Arc::from(opened.engine);
        let loss = &opened.journal_loss;
        for file in &loss.quarantined {
            tracing::error!(
                node = %id,
                file = %file.display(),
                "damaged storage journal moved aside: its unflushed writes are lost here and come back from the other replicas"
            );
        }
        for (file, was, now) in &loss.truncated {
            tracing::warn!(
                node = %id,
                file = %file.display(),
                was, now,
                "storage journal cut short as it was recovered (a crash's torn tail, or damage): what followed is lost here"
            );
        }

        // A journal that lost writes lost them whatever the last stop was: a new incarnation.
        let incarnations = incarnation::IncarnationFile::new(&config.dir);
        let kept_everything = config.engine == EngineKind::Durable && loss.is_empty();
        let (incarnation, after_loss) = incarnations.begin(kept_everything)?;
        let file = Arc::new(saved_view::SavedView::new(config.dir.join(saved_view::FILE)));
        let view = file.load()?.unwrap_or_else(|| ClusterView::new(config.partition_bits));
        for (store, _) in view.stores() {
            let moved = storage::layout::migrate(&*engine, store)?;
            if moved > 0 {
                tracing::info!(node = %id, %store, moved, "records moved to the token-ordered layout");
            }
        }
        let mut machine_config = quickv_core::node::NodeConfig::new(info, secret);
        machine_config.seeds = config.seeds.iter().map(SocketAddr::to_string).collect();
        machine_config.limits = config.limits;
        machine_config.replica_timeout = config.replica_timeout;
        machine_config.sync_interval = config.sync_interval;
        machine_config.seed = RandomState::new().hash_one(&id);
        machine_config.incarnation = incarnation;
        // Any stop that was not clean may have lost a mint: one not synced when acknowledged
        // (`--sync os`), or one the node released to the other replicas before its own store
        // finished (sync always too: see `quickv_core::node`'s early release).
        machine_config.lost_records = after_loss || !loss.is_empty();
        machine_config.max_stores = config.max_stores;
        machine_config.max_clock_skew = config.max_clock_skew;
        machine_config.default_store = Some(config.default_store);
        machine_config.anti_entropy_interval = config.anti_entropy_interval;
        machine_config.anti_entropy_budget = config.anti_entropy_budget;
        machine_config.max_hints = config.max_hints;
        machine_config.max_hint_bytes = config.max_hint_bytes;
        machine_config.max_hint_age = config.max_hint_age;
        machine_config.hint_batch = config.hint_batch;
        machine_config.hint_budget = config.hint_budget;
        machine_config.busy_background_percent = config.busy_background_percent;
        machine_config.automatic_ring_changes = config.automatic_ring_changes;
        machine_config.tombstone_grace = config.tombstone_grace;
        machine_config.scrub_interval = config.scrub_interval;
        machine_config.counter_floor = steps::counter_floor(&*engine, incarnation)?;
        let origin = tokio::time::Instant::now();
        machine_config.wall_clock_origin_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let machine = quickv_core::node::Node::new(machine_config, view, Duration::ZERO).map_err(|e| match e {
            NodeError::Id(id, _) => StartError::Info(NodeInfoError::IdReserved { id: id.to_string() }),
            left @ NodeError::Left(_) => StartError::Left(left),
            other => StartError::SavedView {
                path: file.path().to_owned(),
                reason: format!("cannot add this node to the saved view: {other}"),
            },
        })?;
        let id = machine.id().clone();
        let max_frame = machine.max_frame();

        let transport = Arc::new(Transport::new(endpoint.clone(), config.replica_timeout));
        let (saves, saves_rx) = mpsc::unbounded_channel();
        let (metrics, metrics_server) = match config.metrics {
            Some(addr) => {
                let (mut metrics, server) = metrics::Metrics::serve(addr)?;
                metrics.journal_loss(loss);
                (Some(metrics), Some(tokio::spawn(server)))
            }
            None => (None, None),
        };
        let (driver, inputs, observed) =
            driver::Driver::new(machine, incarnation, origin, transport.clone(), engine.clone(), saves, metrics)
                .map_err(|source| StartError::Threads { source })?;
        let saver = tokio::spawn(driver::save_views(file, saves_rx, inputs.clone()));
        // One budget of connections and request bytes for every caller, over QUIC or HTTPS.
        let held = bounds::Held::new(config.bounds);
        let mut http_addr = None;
        let mut http_task = None;
        if let Some((listener, local)) = http_listener {
            http_addr = Some(local);
            let api = Arc::new(http::Api::new(
                inputs.clone(),
                observed.clone(),
                max_frame,
                config.http_origins.clone(),
                held.clone(),
            ));
            http_task = Some(tokio::spawn(http::serve(listener, http::tls_config(&identity)?, api, held.clone())));
        }
        let origins = Arc::new(config.http_origins.clone());
        let rotation = browser.map(|(certs, resolver)| {
            tokio::spawn(browser_cert::rotate(certs, resolver, web, inputs.clone(), id.clone()))
        });
        let mut tasks = vec![
            tokio::spawn(endpoint::accept(endpoint.clone(), inputs, max_frame, held, origins)),
            tokio::spawn(driver.run()),
        ];
        tasks.extend(metrics_server);
        tasks.extend(http_task);
        tasks.extend(rotation);
        tracing::info!(node = %id, addr = %advertise, incarnation, "node started");
        let transport = Arc::downgrade(&transport);
        Ok(Node { id, incarnation, incarnations, endpoint, transport, engine, observed, tasks, saver, http: http_addr })
    }

    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// The incarnation the node runs in (its writes are minted as `id#incarnation`).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The address the node listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// Where the HTTPS API listens (`None` unless [`NodeConfig::http`] is set).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// The node's current cluster view.
    pub fn view(&self) -> ClusterView {
        ClusterView::clone(&self.observed.view())
    }

    /// The node's request counters.
    pub fn stats(&self) -> NodeStats {
        self.observed.stats()
    }

    /// Waits until the cluster refuses this node's join for good (its id belongs to a node with
    /// another certificate); returns why. Pending for ever while that does not happen.
    pub async fn join_refused(&self) -> String {
        self.observed.join_refused().await
    }

    /// Stops serving: closes connections, stops the driver, saves every view the machine asked
    /// to save and flushes storage.
    pub async fn shutdown(self) {
        let Node { id, incarnation, incarnations, endpoint, transport, engine, observed, tasks, saver, .. } = self;
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        // The driver is gone, and with it the saver's sender: the saver saves what is queued and
        // ends. A view this node has already gossiped (a node that left: `Removed`) is on disk
        // when a clean stop returns, so the next start sees it (regression:
        // `departure::a_node_leaves_another_is_removed_and_every_write_reads_back` restarted a
        // node that had left, its last view save aborted by the stop).
        if tokio::time::timeout(SAVER_DRAIN, saver).await.is_err() {
            tracing::warn!(node = %id, "the last view saves did not finish in time at shutdown");
        }
        let renew = observed.renew_incarnation();
        drop(observed);
        endpoint.close(0u32.into(), b"node shutting down");
        let _ = tokio::time::timeout(Duration::from_millis(500), endpoint.wait_idle()).await;
        drop(endpoint);
        // Wait (briefly) for requests in flight to let go of the engine and the transport, so
        // that the files and the socket are released on return.
        for _ in 0..100 {
            if Arc::strong_count(&engine) == 1 && transport.strong_count() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The committer holds the engine until it has written everything handed to it: a write
        // still under way may hold a dot other replicas have (a mint released before its store
        // finished), so the incarnation goes on only once the committer is done.
        let writing = Arc::strong_count(&engine) > 1;
        // Only once everything is flushed may the next start go on in this incarnation.
        match tokio::task::spawn_blocking(move || engine.flush()).await {
            // A damaged record, or a store that failed, may have held dots this incarnation
            // minted: it must not go on.
            Ok(Ok(())) if renew => tracing::warn!(
                node = %id,
                "node stopped; a record was found damaged or a store failed, so the next start begins a new incarnation"
            ),
            Ok(Ok(())) if writing => tracing::warn!(
                node = %id,
                "node stopped; writes were still under way, so the next start begins a new incarnation"
            ),
            Ok(Ok(())) => match incarnations.end_cleanly(incarnation) {
                Ok(()) => tracing::info!(node = %id, "node stopped"),
                Err(e) => tracing::warn!(node = %id, "node stopped; the next start begins a new incarnation: {e}"),
            },
            Ok(Err(e)) => tracing::error!(node = %id, "storage flush failed at shutdown: {e}"),
            Err(e) => tracing::error!(node = %id, "storage flush failed at shutdown: {e}"),
        }
    }
}
