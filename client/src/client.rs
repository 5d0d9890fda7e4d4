//! The smart client: a builder, a cheap-to-clone [`Client`] and per-store handles.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quickv_core::cluster::ClusterView;
use quickv_core::coordinator::{GetOutcome, ReplicaFailure};
use quickv_core::identity::NodeId;
use quickv_core::liveness::{Liveness, LivenessConfig, StatusReport};
use quickv_core::routing::RoutingTable;
use quickv_core::store::{Limits, StoreConfig, StoreName};
use quickv_core::version::{CausalContext, Value, Write, WriteId};
use quickv_core::wire::{Request, Response};

mod departure;
mod ring_change;
pub use ring_change::PlannedChange;

use crate::drive::{self, NodeCaller, Target};
use crate::error::{ConnectError, CreateStoreError, GetError, PutError, RefreshError, StoreError};
use crate::resolver::Resolver;
use quickv_net::tls::{self, ClusterCa};
use quickv_net::transport::Transport;
use tokio::time::Instant;

/// Delays between retries: `base * 2^attempt`, capped at `max`. A pure value: no clock, no I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.base.saturating_mul(1u32 << attempt.min(16)).min(self.max)
    }
}

/// Client settings; [`ClientOptions::default`] documents the defaults.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// How long one replica has to answer one request (default 2 s).
    pub replica_timeout: Duration,
    /// How many times a retryable failure is retried (default 2).
    pub retries: u32,
    /// Delays between retries (default 20 ms doubling to 500 ms).
    pub backoff: Backoff,
    /// Fallback nodes a sloppy store may use when replicas do not answer (default 3).
    pub fallbacks: usize,
    /// How often the client asks a node for its status in the background (default 2 s): the
    /// cluster view, and that node's verdict on each other node, so requests ask a node the
    /// cluster holds for down last (only when the quorum cannot be met without it) within
    /// moments of its detection.
    pub refresh_interval: Duration,
    /// Key and value limits checked before sending (default 65,535-byte keys, 16 MiB values; nodes
    /// enforce their own).
    pub limits: Limits,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            replica_timeout: Duration::from_secs(2),
            retries: 2,
            backoff: Backoff { base: Duration::from_millis(20), max: Duration::from_millis(500) },
            fallbacks: 3,
            refresh_interval: Duration::from_secs(2),
            limits: Limits::default(),
        }
    }
}

/// Builds a [`Client`]: `Client::builder().seeds(["127.0.0.1:7101"]).ca_cert(ca).build().await`.
#[derive(Debug, Default)]
pub struct ClientBuilder {
    seeds: Vec<String>,
    ca: Option<ClusterCa>,
    options: ClientOptions,
}

impl ClientBuilder {
    /// Node addresses to fetch the cluster view from (`IP:port`); any one that answers will do.
    pub fn seeds<I, S>(mut self, seeds: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.seeds.extend(seeds.into_iter().map(Into::into));
        self
    }

    /// The cluster CA that node certificates must chain to.
    pub fn ca_cert(mut self, ca: ClusterCa) -> ClientBuilder {
        self.ca = Some(ca);
        self
    }

    /// Settings other than the defaults.
    pub fn options(mut self, options: ClientOptions) -> ClientBuilder {
        self.options = options;
        self
    }

    /// Connects to a seed, fetches the cluster view and starts the background refresh.
    pub async fn build(self) -> Result<Client, ConnectError> {
        let ca = self.ca.ok_or(ConnectError::NoCa)?;
        let mut seeds = Vec::new();
        for seed in &self.seeds {
            // A seed that is not an address is a mistake to report, not a node to skip.
            let addrs = tokio::net::lookup_host(seed.as_str())
                .await
                .map_err(|e| ConnectError::BadSeed { seed: seed.clone(), reason: e.to_string() })?;
            seeds.extend(addrs);
        }
        let Some(first) = seeds.first() else { return Err(ConnectError::NoSeeds) };
        let bind: SocketAddr = if first.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let config = tls::client_config(&ca, None)?;
        let transport = Transport::client(config, bind, self.options.replica_timeout)?;
        let liveness = Liveness::without_detector(LivenessConfig::for_interval(self.options.refresh_interval));
        let inner = Arc::new(Inner {
            transport,
            seeds,
            topology: RwLock::new(Arc::new(RoutingTable::new(ClusterView::new(0)))),
            options: self.options,
            background: Arc::new(Background::default()),
            liveness: Mutex::new(liveness),
            origin: Instant::now(),
        });
        let report = inner.fetch_status().await.map_err(|RefreshError::Unreachable(f)| ConnectError::Unreachable(f))?;
        inner.install(report.view.clone());
        inner.take_report(&report);
        let weak = Arc::downgrade(&inner);
        let interval = inner.options.refresh_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { return };
                let _ = inner.refresh().await;
            }
        });
        Ok(Client { inner })
    }
}

/// A connection to a quickv cluster. Cheap to clone; clones share connections and the view.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    transport: Transport,
    seeds: Vec<SocketAddr>,
    topology: RwLock<Arc<RoutingTable>>,
    options: ClientOptions,
    /// The requests whose coordinators are still at work (after their reply: the last replica
    /// answers, read repairs).
    background: Arc<Background>,
    /// The client's own verdict on each node: from its requests' outcomes and the reports of
    /// the nodes it asks for the view (see [`quickv_core::liveness`]).
    liveness: Mutex<Liveness>,
    /// Time zero of the verdicts.
    origin: Instant,
}

/// Counts the requests still at work; see [`Client::wait_idle`].
#[derive(Debug, Default)]
struct Background {
    working: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One request at work, from its start until its coordinator and its repairs are done (the
/// driver holds the request's caller, and so this, until then).
#[derive(Debug)]
struct Working(Arc<Background>);

impl Working {
    fn new(background: &Arc<Background>) -> Working {
        background.working.fetch_add(1, Ordering::SeqCst);
        Working(background.clone())
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        if self.0.working.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Client {
    /// A builder.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A handle on one store, carrying its fixed settings. Refreshes the view once if the
    /// store is not known yet.
    pub async fn store(&self, name: &str) -> Result<Store, StoreError> {
        let name = StoreName::new(name)?;
        let known = |c: &Client| c.inner.topology().view().store(&name).copied();
        let config = match known(self) {
            Some(config) => config,
            None => {
                self.inner.refresh().await?;
                known(self).ok_or_else(|| StoreError::Unknown(name.clone()))?
            }
        };
        Ok(Store { client: self.clone(), name, config })
    }

    /// Creates a store with settings fixed for life. Returns `true` if it was created, `false`
    /// if it already existed with these settings.
    pub async fn create_store(&self, name: &StoreName, config: StoreConfig) -> Result<bool, CreateStoreError> {
        // Nodes acknowledge a create of an existing identical store too: tell the two apart
        // with a fresh view.
        let _ = self.inner.refresh().await;
        let existed = self.inner.topology().view().store(name) == Some(&config);
        self.change_catalogue(Request::CreateStore { name: name.clone(), config }).await?;
        Ok(!existed)
    }

    /// Sends a catalogue change to the first node that takes it, then refreshes the view.
    async fn change_catalogue(&self, request: Request) -> Result<(), CreateStoreError> {
        let mut failures = Vec::new();
        for addr in self.inner.candidates() {
            match self.inner.transport.call(addr, None, request.clone()).await {
                Ok(Response::Ack) => {
                    let _ = self.inner.refresh().await;
                    return Ok(());
                }
                Ok(Response::Error(e)) if !e.kind.is_retryable() => {
                    return Err(CreateStoreError::Refused(e.into_refusal()));
                }
                Ok(other) => failures.push((addr, format!("unexpected answer {other:?}"))),
                Err(e) => failures.push((addr, e.to_string())),
            }
        }
        Err(RefreshError::Unreachable(failures).into())
    }

    /// Drops a store: it stops existing in the whole cluster and its name is not used again (its
    /// data is deleted by every node as it learns of the drop). Returns once a node has saved the catalogue without it. Dropping
    /// a store that does not exist is refused (`UnknownStore`); dropping it twice is not an error.
    pub async fn drop_store(&self, name: &StoreName) -> Result<(), CreateStoreError> {
        self.change_catalogue(Request::DropStore { name: name.clone() }).await
    }

    /// The cluster view as last fetched: membership, ring and store catalogue.
    pub fn view(&self) -> ClusterView {
        self.inner.topology().view().clone()
    }

    /// What one node sees (the first that answers, nodes held for down last): its view, and its
    /// verdict on each other node (up, suspect or down; when it last heard of it; the hints it
    /// holds for it). `quickv status` shows it. Also refreshes this client's view and verdicts.
    pub async fn status(&self) -> Result<StatusReport, RefreshError> {
        let report = self.inner.fetch_status().await?;
        self.inner.take_report(&report);
        Ok(report)
    }

    /// Fetches the cluster view now.
    pub async fn refresh(&self) -> Result<(), RefreshError> {
        self.inner.refresh().await
    }

    /// Waits until no request is at work any more, at most `limit`; returns whether that came.
    /// A request's coordinator goes on after its reply (a read waits for the last replicas, then
    /// repairs the stale ones): a program that exits right after its last answer calls this
    /// first, or those repairs are lost with it.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let background = &self.inner.background;
        let idle = async {
            loop {
                let notified = background.idle.notified();
                if background.working.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, idle).await.is_ok()
    }

    /// Closes the client's connections.
    pub fn close(&self) {
        self.inner.transport.close();
    }
}

impl Inner {
    fn topology(&self) -> Arc<RoutingTable> {
        self.topology.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn install(&self, view: ClusterView) {
        *self.topology.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(RoutingTable::new(view));
    }

    /// Known members first, then the seeds.
    fn candidates(&self) -> Vec<SocketAddr> {
        let mut all: Vec<SocketAddr> = self.topology().addresses().collect();
        for seed in &self.seeds {
            if !all.contains(seed) {
                all.push(*seed);
            }
        }
        all
    }

    /// What the first node that answers sees: its view, and its verdict on each peer.
    async fn fetch_status(&self) -> Result<StatusReport, RefreshError> {
        let mut failures = Vec::new();
        let topology = self.topology();
        // Nodes held for down are asked last.
        let mut candidates = self.candidates();
        candidates.sort_by_key(|addr| topology.node_at(*addr).is_some_and(|id| self.is_down(&id)));
        for addr in candidates {
            match self.transport.call(addr, None, Request::Status).await {
                Ok(Response::Status(report)) => return Ok(*report),
                Ok(other) => failures.push((addr, format!("unexpected answer {other:?}"))),
                Err(e) => failures.push((addr, e.to_string())),
            }
        }
        Err(RefreshError::Unreachable(failures))
    }

    async fn refresh(&self) -> Result<(), RefreshError> {
        let report = self.fetch_status().await?;
        let mut view = self.topology().view().clone();
        // A view that does not merge (another partition count) belongs to a new cluster at the
        // same addresses, or this client has none yet.
        if view.merge(&report.view).is_err() {
            view = report.view.clone();
        }
        self.install(view);
        self.take_report(&report);
        Ok(())
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn liveness(&self) -> std::sync::MutexGuard<'_, Liveness> {
        self.liveness.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a node's report: the node itself answered; its verdict on each peer is this
    /// client's (until a request to the peer says otherwise, or the peer answers after it).
    fn take_report(&self, report: &StatusReport) {
        let now = self.now();
        let mut liveness = self.liveness();
        liveness.handle_answer(now, &report.node);
        for peer in &report.peers {
            liveness.adopt(now, &peer.id, peer.state);
        }
        liveness.update(now);
    }

    /// Whether requests should skip `node`.
    fn is_down(&self, node: &NodeId) -> bool {
        self.liveness().is_down(node)
    }

    /// A request to `node` was answered (`Ok`) or failed: `unreachable` when no connection
    /// could be made.
    fn heard(&self, node: &NodeId, failure: Option<bool>) {
        let now = self.now();
        let mut liveness = self.liveness();
        match failure {
            None => liveness.handle_answer(now, node),
            Some(unreachable) => liveness.handle_failure(now, node, unreachable),
        }
        liveness.update(now);
    }
}

/// A handle on one store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    client: Client,
    name: StoreName,
    config: StoreConfig,
}

/// What a get found: every concurrent value and the context that has seen them all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versions {
    /// The sibling values; empty if the key is absent (never written, or deleted).
    pub values: Vec<Value>,
    /// Pass this to the next put or delete of the key to supersede every value read.
    pub context: CausalContext,
}

impl Versions {
    fn of(read: GetOutcome) -> Versions {
        Versions { values: read.siblings.values().cloned().collect(), context: read.context }
    }

    /// Whether the key is absent.
    pub fn is_absent(&self) -> bool {
        self.values.is_empty()
    }

    /// One value: the only one, or the resolver's merge of the siblings; `None` if absent.
    pub fn resolve(&self, resolver: &impl Resolver) -> Option<Value> {
        match self.values.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            many => Some(resolver.resolve(many)),
        }
    }
}

/// What one node of a key's preference list holds of it (see [`Store::locate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holding {
    /// A state with this many versions (a tombstone counts as one version, `tombstone` set).
    Versions {
        /// How many versions (siblings) the node holds.
        count: usize,
        /// Whether its state reads as absent (every version a delete).
        tombstone: bool,
    },
    /// Nothing stored for the key.
    Nothing,
    /// The node did not answer, or answered an error.
    Unknown,
}

/// Where a key lives, as this client's ring places it (see [`Store::locate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The key's token on the ring.
    pub token: quickv_core::token::Token,
    /// The ring's epoch.
    pub epoch: u64,
    /// The key's N primaries, in preference order, with what each holds.
    pub primaries: Vec<(NodeId, Holding)>,
    /// The fallbacks a sloppy write would use next, with what each holds (hinted copies).
    pub fallbacks: Vec<(NodeId, Holding)>,
    /// During a ring change, the key's pending owners (replicas in the next ring that are not
    /// among the primaries), with what each holds: writes reach them, and they receive the
    /// key's partition before the change is committed.
    pub pending: Vec<(NodeId, Holding)>,
}

impl Store {
    /// The store's name.
    pub fn name(&self) -> &StoreName {
        &self.name
    }

    /// Where `key` lives: its token, its primaries and fallbacks under this client's ring (and
    /// its pending owners while a ring change is under way), and what each of those nodes holds
    /// of it, asked directly and at once (a diagnostic: nothing is repaired, no quorum is
    /// counted).
    pub async fn locate(&self, key: impl AsRef<[u8]>) -> Result<Location, GetError> {
        let key = key.as_ref();
        let inner = &self.client.inner;
        inner.options.limits.check_key(key).map_err(GetError::InvalidKey)?;
        let topology = inner.topology();
        let prefs = topology.preference_list(key, self.config.n(), inner.options.fallbacks).ok_or(GetError::NoNodes)?;
        let caller = Arc::new(ClientCaller {
            inner: inner.clone(),
            topology: topology.clone(),
            stale: AtomicBool::new(false),
            _working: Working::new(&inner.background),
        });
        let ask = |node: NodeId| {
            let (caller, store) = (caller.clone(), self.name.clone());
            let request = Request::Get { store, key: key.to_vec() };
            tokio::spawn(async move {
                let holding = match caller.call(node.clone(), request).await {
                    Ok(Response::State(Some(state))) => Holding::Versions {
                        count: state.siblings.versions().len(),
                        tombstone: state.siblings.is_tombstone(),
                    },
                    Ok(Response::State(None)) => Holding::Nothing,
                    _ => Holding::Unknown,
                };
                (node, holding)
            })
        };
        let token = quickv_core::token::Token::of(key);
        let pending_owners: Vec<NodeId> = match topology.view().write_plan(token, &self.config, 0) {
            Some(plan) => plan.prefs.primaries().iter().skip(self.config.n()).cloned().collect(),
            None => Vec::new(),
        };
        let primaries: Vec<_> = prefs.primaries().iter().take(self.config.n()).cloned().map(&ask).collect();
        let fallbacks: Vec<_> = prefs.fallbacks().iter().cloned().map(&ask).collect();
        let pending: Vec<_> = pending_owners.into_iter().map(&ask).collect();
        let mut location = Location {
            token,
            epoch: topology.epoch(),
            primaries: Vec::new(),
            fallbacks: Vec::new(),
            pending: Vec::new(),
        };
        for task in primaries {
            location.primaries.extend(task.await.ok());
        }
        for task in fallbacks {
            location.fallbacks.extend(task.await.ok());
        }
        for task in pending {
            location.pending.extend(task.await.ok());
        }
        Ok(location)
    }

    /// A no-op request to the first replica of `key` this client holds up (`quickv bench
    /// --workload ping`): it passes the request path up to the storage call, carrying `payload`,
    /// and is answered without touching storage. Returns the node that answered. The ceiling
    /// every other request is measured against.
    pub async fn ping(&self, key: impl AsRef<[u8]>, payload: Vec<u8>) -> Result<NodeId, GetError> {
        let key = key.as_ref();
        self.client.inner.options.limits.check_key(key).map_err(GetError::InvalidKey)?;
        let quorum = self.config.quorum_kind();
        let unavailable = GetError::Unavailable { required: 1, answered: 0, quorum };
        self.retrying(
            key,
            |caller, target| {
                let (payload, unavailable) = (payload.clone(), unavailable.clone());
                async move {
                    let primaries = target.prefs.primaries();
                    let up = primaries.iter().find(|n| !target.held_down.contains(n));
                    let Some(to) = up.or(primaries.first()).cloned() else { return Err(GetError::NoNodes) };
                    let request = Request::Ping { store: target.store, key: target.key, payload };
                    match caller.call(to.clone(), request).await {
                        Ok(Response::Ack) => Ok(to),
                        Ok(Response::Error(e)) if !e.kind.is_retryable() => Err(GetError::Refused(e.into_refusal())),
                        Ok(_) | Err(_) => Err(unavailable),
                    }
                }
            },
            GetError::is_retryable,
            GetError::NoNodes,
        )
        .await
    }

    /// The store's settings, fixed at creation.
    pub fn config(&self) -> StoreConfig {
        self.config
    }

    /// Reads a key from R of its replicas.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Versions, GetError> {
        let key = key.as_ref();
        self.client.inner.options.limits.check_key(key).map_err(GetError::InvalidKey)?;
        let read = self
            .retrying(
                key,
                |caller, target| async move { Ok(drive::get(caller, target).await?) },
                GetError::is_retryable,
                GetError::NoNodes,
            )
            .await?;
        Ok(Versions::of(read))
    }

    /// Writes a value, superseding the versions `context` has seen (use
    /// [`CausalContext::empty`] for a blind write). Returns the context of the new state.
    pub async fn put(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Value>,
        context: &CausalContext,
    ) -> Result<CausalContext, PutError> {
        let value = value.into();
        self.client.inner.options.limits.check_value(value.as_ref()).map_err(PutError::OverLimit)?;
        self.write(key.as_ref(), Write::put(value, context.clone(), now_millis())).await
    }

    /// Deletes a key: writes a tombstone superseding the versions `context` has seen.
    pub async fn delete(&self, key: impl AsRef<[u8]>, context: &CausalContext) -> Result<CausalContext, PutError> {
        self.write(key.as_ref(), Write::delete(context.clone(), now_millis())).await
    }

    async fn write(&self, key: &[u8], write: Write) -> Result<CausalContext, PutError> {
        self.client.inner.options.limits.check_key(key).map_err(PutError::OverLimit)?;
        // One id for every attempt: the attempts are one write. Once a node applied it (or may
        // have), attempts after that go to that node only, which recognises it by its id.
        let write = if write.id.is_none() { write.with_id(new_write_id()) } else { write };
        let minter = Mutex::new(None::<NodeId>);
        let minter = &minter;
        let outcome = self
            .retrying(
                key,
                |caller, target| {
                    let write = write.clone();
                    let pinned = minter.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    async move {
                        let result = drive::put(caller, target, write, pinned).await;
                        if let Some(node) = result.as_ref().err().and_then(|e| e.minter()) {
                            *minter.lock().unwrap_or_else(|p| p.into_inner()) = Some(node.clone());
                        }
                        Ok(result?)
                    }
                },
                PutError::is_retryable,
                PutError::NoNodes,
            )
            .await?;
        Ok(outcome.context())
    }

    /// Routes with the current view and retries retryable failures, refreshing the view first
    /// when a node said it was stale.
    async fn retrying<T, E, F, Fut>(&self, key: &[u8], run: F, retryable: fn(&E) -> bool, no_nodes: E) -> Result<T, E>
    where
        F: Fn(Arc<ClientCaller>, Target) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let inner = &self.client.inner;
        let mut attempt = 0;
        loop {
            let topology = inner.topology();
            let Some(prefs) = topology.preferences(key, &self.config, inner.options.fallbacks) else {
                return Err(no_nodes);
            };
            let held_down = prefs.primaries().iter().chain(prefs.fallbacks());
            let held_down = held_down.filter(|n| inner.is_down(n)).cloned().collect();
            let target = Target {
                store: self.name.clone(),
                config: self.config,
                key: key.to_vec(),
                prefs,
                timeout: inner.options.replica_timeout,
                held_down,
            };
            let caller = Arc::new(ClientCaller {
                inner: self.client.inner.clone(),
                topology,
                stale: AtomicBool::new(false),
                _working: Working::new(&inner.background),
            });
            let result = run(caller.clone(), target).await;
            let stale = caller.stale.load(Ordering::Relaxed);
            match result {
                Err(e) if retryable(&e) && attempt < inner.options.retries => {
                    if stale {
                        let _ = inner.refresh().await;
                    } else {
                        tokio::time::sleep(inner.options.backoff.delay(attempt)).await;
                    }
                    attempt += 1;
                }
                other => {
                    if stale {
                        let inner = self.client.inner.clone();
                        tokio::spawn(async move { inner.refresh().await });
                    }
                    return other;
                }
            }
        }
    }
}

/// Sends replica requests straight to nodes, routed with one topology.
#[derive(Debug)]
struct ClientCaller {
    inner: Arc<Inner>,
    topology: Arc<RoutingTable>,
    stale: AtomicBool,
    /// Counts the request as at work while anyone (its driver, a repair) holds the caller.
    _working: Working,
}

impl NodeCaller for ClientCaller {
    async fn call(&self, to: NodeId, request: Request) -> Result<Response, ReplicaFailure> {
        let addr = self.topology.address(&to).ok_or(ReplicaFailure::Unavailable)?;
        let answer = self.inner.transport.call(addr, self.topology.ring_version(), request).await;
        let answer = drive::replica_answer(answer, &self.stale);
        match &answer {
            Ok(_) => self.inner.heard(&to, None),
            Err(failure) => self.inner.heard(&to, Some(*failure == ReplicaFailure::Unavailable)),
        }
        answer
    }
}

/// A fresh write id: random per process (the standard library's randomly keyed hasher) and
/// distinct within it (a counter).
fn new_write_id() -> WriteId {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    thread_local!(static KEYS: RandomState = RandomState::new());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let (hi, lo) = KEYS.with(|keys| (keys.hash_one((n, 1u8)), keys.hash_one((n, 2u8))));
    WriteId((u128::from(hi) << 64 | u128::from(lo)).max(1))
}

/// Milliseconds since the Unix epoch: the timestamp last-writer-wins stores compare.
fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
