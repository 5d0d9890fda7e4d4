//! The JavaScript client: `Client.connect`, `get`, `put`, `delete`, `close`.
//!
//! It routes every request with core (the cluster view's ring and the store's settings) and
//! sends it one of two ways:
//!
//! - **WebTransport** (browsers): a session to each node the key's coordinator names, core's own
//!   coordinators running here in wasm (`drive`): a get asks the replicas and counts R, merges
//!   their states and repairs a stale one; a put is handed to one replica (core's `ForwardPut`),
//!   retried at the node a failure names, so it is never applied twice.
//! - **HTTPS** (Node, edge runtimes: no WebTransport): the key's preference-list nodes' HTTPS
//!   API, the first that answers coordinating the request, failing over along the list.
//!
//! A node that says the view is stale has the client load it again (over WebTransport from a
//! node, else from the seeds) before it routes again.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use quickv_core::cluster::ClusterView;
use quickv_core::coordinator::{self, ForwardPut, GetCoordinator, GetOutcome, Read, ReplicaFailure, RoutedRequests};
use quickv_core::identity::NodeId;
use quickv_core::liveness::{Liveness, LivenessConfig, StatusReport};
use quickv_core::ring::PreferenceList;
use quickv_core::routing::RoutingTable;
use quickv_core::store::{Limits, StoreConfig, StoreName};
use quickv_core::version::{CausalContext, SealedState, Write, WriteId};
use quickv_core::wire::{Request, Response};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::convert::{self, ClientError};
use crate::drive::{self, WebCaller};
use crate::https;
use crate::io;

/// How many times a request that failed in a way that may pass is tried again.
const RETRIES: u32 = 2;

/// How old the view may grow before a request has it loaded again in the background (nodes
/// that joined or left since, and, over WebTransport, a node's verdicts on the others: a node
/// this client holds down is back up once a node says so). A node that says the view is stale
/// has it loaded again at once.
const REFRESH_AFTER_MS: f64 = 5_000.0;

/// What the client believes of each node: core's failure bookkeeping without a detector (as the
/// Rust client keeps it), fed by the answers and failures of its requests and by the verdicts a
/// node reports. Nodes held down are asked last: a key's coordinators try the others first.
pub(crate) struct Health {
    liveness: RefCell<Liveness>,
    origin: f64,
}

impl Health {
    fn new() -> Health {
        let config = LivenessConfig::for_interval(Duration::from_millis(REFRESH_AFTER_MS as u64));
        Health { liveness: RefCell::new(Liveness::without_detector(config)), origin: io::monotonic_ms() }
    }

    fn now(&self) -> Duration {
        Duration::from_secs_f64(((io::monotonic_ms() - self.origin) / 1000.0).max(0.0))
    }

    /// A request to `node` was answered (`None`) or failed.
    pub(crate) fn heard(&self, node: &NodeId, failure: Option<&ReplicaFailure>) {
        let now = self.now();
        let mut liveness = self.liveness.borrow_mut();
        match failure {
            None => liveness.handle_answer(now, node),
            Some(failure) => liveness.handle_failure(now, node, *failure == ReplicaFailure::Unavailable),
        }
        liveness.update(now);
    }

    /// A node's report: it answered, and its verdicts on the others are this client's.
    fn adopt(&self, report: &StatusReport) {
        let now = self.now();
        let mut liveness = self.liveness.borrow_mut();
        liveness.handle_answer(now, &report.node);
        for peer in &report.peers {
            liveness.adopt(now, &peer.id, peer.state);
        }
        liveness.update(now);
    }

    /// The nodes of `prefs` held down.
    pub(crate) fn held_down(&self, prefs: &PreferenceList) -> Vec<NodeId> {
        let liveness = self.liveness.borrow();
        prefs.primaries().iter().chain(prefs.fallbacks()).filter(|n| liveness.is_down(n)).cloned().collect()
    }
}

/// How the client reaches the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    WebTransport,
    Https,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::WebTransport => "webtransport",
            Mode::Https => "https",
        }
    }
}

/// Where the last request went: the key and the nodes asked, in order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Route {
    pub(crate) key: Vec<u8>,
    pub(crate) nodes: Vec<NodeId>,
}

pub(crate) struct Inner {
    table: RefCell<Rc<RoutingTable>>,
    seeds: Vec<String>,
    fetch: JsValue,
    mode: Mode,
    sessions: Rc<io::Sessions>,
    timeout: Duration,
    next_id: Rc<Cell<u64>>,
    last_route: RefCell<Option<Route>>,
    closed: Cell<bool>,
    /// When the view was loaded (the monotonic clock, ms).
    loaded_at: Cell<f64>,
    /// A load of the view under way in the background.
    refreshing: Cell<bool>,
    health: Rc<Health>,
}

/// A quickv client for JavaScript. See the module docs and `bindings/README.md`.
#[wasm_bindgen]
pub struct Client {
    inner: Rc<Inner>,
}

#[wasm_bindgen]
impl Client {
    /// Connects: loads the cluster view (`options.ring`, the JSON of `GET /v1/ring` or its
    /// `view` field, or else from the first of `options.seeds`, HTTPS URLs of nodes, that
    /// answers) and picks the transport (`options.transport`: `"webtransport"`, `"https"` or
    /// `"auto"`, the default: WebTransport where the runtime has it). `options.timeoutMs` bounds
    /// each request to a node (default 2,000); `options.fetch` replaces the global `fetch`.
    pub async fn connect(
        #[wasm_bindgen(unchecked_param_type = "ConnectOptions")] options: JsValue,
    ) -> Result<Client, JsValue> {
        let options = convert::connect_options(&options)?;
        let mut mode = match options.transport.as_deref() {
            None | Some("auto") if io::has_web_transport() => Mode::WebTransport,
            None | Some("auto") | Some("https") => Mode::Https,
            Some("webtransport") if io::has_web_transport() => Mode::WebTransport,
            Some("webtransport") => {
                return Err(ClientError::new(
                    400,
                    "malformed",
                    "this runtime has no WebTransport: use transport \"https\"",
                )
                .into());
            }
            Some(other) => {
                let message = format!("transport must be \"auto\", \"webtransport\" or \"https\", not {other:?}");
                return Err(js_sys::TypeError::new(&message).into());
            }
        };
        let inner = Inner {
            table: RefCell::new(Rc::new(RoutingTable::new(ClusterView::new(0)))),
            seeds: options.seeds,
            fetch: options.fetch,
            mode,
            sessions: Rc::new(io::Sessions::new()),
            timeout: options.timeout,
            next_id: Rc::new(Cell::new(1)),
            last_route: RefCell::new(None),
            closed: Cell::new(false),
            loaded_at: Cell::new(0.0),
            refreshing: Cell::new(false),
            health: Rc::new(Health::new()),
        };
        let view = match options.ring {
            Some(ring) => convert::view_of_ring(&ring)?,
            None => inner.view_from_seeds().await?,
        };
        // Nodes run with --no-webtransport publish no certificate hash: "auto" goes over HTTPS.
        let auto = matches!(options.transport.as_deref(), None | Some("auto"));
        if auto && !view.membership().nodes().any(|n| !n.web.webtransport().is_empty()) {
            mode = Mode::Https;
        }
        let inner = Inner { mode, ..inner };
        inner.install(view);
        Ok(Client { inner: Rc::new(inner) })
    }

    /// Reads `key` (a string or a `Uint8Array`) of `store`: `{ values, context }`, every value
    /// a `Uint8Array` (several when writes were concurrent; none when the key is absent) and
    /// the context to pass to the next `put` or `delete` of the key.
    #[wasm_bindgen(unchecked_return_type = "Promise<ReadResult>")]
    pub fn get(
        &self,
        store: &str,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] key: &JsValue,
    ) -> Result<js_sys::Promise, JsValue> {
        let key = convert::bytes(key, "key")?;
        Inner::refresh_if_old(&self.inner);
        let (inner, store) = (self.inner.clone(), store.to_owned());
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let (values, context) = inner.get(&store, key).await?;
            Ok(convert::read_result(&values, context.as_deref()))
        }))
    }

    /// Writes `value` (a string or a `Uint8Array`) to `key`, superseding the versions `context`
    /// (from a `get`) has seen; without a context the write is blind and stands beside what is
    /// there. Resolves the context of the new state.
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn put(
        &self,
        store: &str,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] key: &JsValue,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] value: &JsValue,
        context: Option<String>,
    ) -> Result<js_sys::Promise, JsValue> {
        let key = convert::bytes(key, "key")?;
        let value = convert::bytes(value, "value")?;
        Inner::refresh_if_old(&self.inner);
        let (inner, store) = (self.inner.clone(), store.to_owned());
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let context = inner.write(&store, key, Some(value), context).await?;
            Ok(JsValue::from_str(&context))
        }))
    }

    /// Deletes `key`: removes the versions `context` (from a `get`, required) has seen; a
    /// version written since stays. Resolves the context of the new state.
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn delete(
        &self,
        store: &str,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] key: &JsValue,
        context: JsValue,
    ) -> Result<js_sys::Promise, JsValue> {
        let key = convert::bytes(key, "key")?;
        let Some(context) = context.as_string() else {
            return Err(js_sys::TypeError::new("delete needs the context of a get of the key (a string)").into());
        };
        Inner::refresh_if_old(&self.inner);
        let (inner, store) = (self.inner.clone(), store.to_owned());
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let context = inner.write(&store, key, None, Some(context)).await?;
            Ok(JsValue::from_str(&context))
        }))
    }

    /// Loads the cluster view again.
    pub async fn refresh(&self) -> Result<(), JsValue> {
        self.inner.refresh().await.map_err(JsValue::from)
    }

    /// Closes the client's sessions; later requests fail.
    pub fn close(&self) {
        self.inner.closed.set(true);
        self.inner.sessions.close();
    }

    /// The epoch of the ring the client routes with (`undefined` before the cluster has one).
    #[wasm_bindgen(getter, js_name = ringEpoch)]
    pub fn ring_epoch(&self) -> Option<f64> {
        self.inner.table().ring_version().map(|v| v.epoch as f64)
    }

    /// `"webtransport"` or `"https"`.
    #[wasm_bindgen(getter)]
    pub fn transport(&self) -> String {
        self.inner.mode.name().into()
    }

    /// Where the last request went: `{ key, nodes }`, the nodes asked in order (by id).
    #[wasm_bindgen(getter, js_name = lastRoute, unchecked_return_type = "Route | undefined")]
    pub fn last_route(&self) -> JsValue {
        match &*self.inner.last_route.borrow() {
            Some(route) => convert::route(route),
            None => JsValue::UNDEFINED,
        }
    }

    /// The key's replicas (by id, in order) in `store` by the client's view, and its fallbacks.
    #[wasm_bindgen(js_name = preferenceList)]
    pub fn preference_list(
        &self,
        store: &str,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] key: &JsValue,
    ) -> Result<crate::PreferenceListJs, JsValue> {
        let key = convert::bytes(key, "key")?;
        let (_, config) = self.inner.store(store)?;
        let prefs = self.inner.prefs(&key, &config)?;
        Ok(convert::preference_list(&prefs))
    }
}

impl Inner {
    /// Has the view loaded again in the background if it is old (see [`REFRESH_AFTER_MS`]): the
    /// request goes on with the view it has (an old view still routes: nodes coordinate what
    /// reaches them, and say when it is stale).
    fn refresh_if_old(this: &Rc<Inner>) {
        if this.closed.get() || this.refreshing.get() || io::monotonic_ms() - this.loaded_at.get() <= REFRESH_AFTER_MS {
            return;
        }
        this.refreshing.set(true);
        let inner = this.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let _ = inner.refresh().await;
            inner.refreshing.set(false);
        });
    }

    fn install(&self, view: ClusterView) {
        *self.table.borrow_mut() = Rc::new(RoutingTable::new(view));
        self.loaded_at.set(io::monotonic_ms());
    }

    /// Takes a view a node answered: merged into the one held (views are CRDTs, and a node that
    /// lags must not take the client back to an older ring), or in its place when they do not
    /// merge (the first view, or a new cluster at the same addresses).
    fn learn(&self, fresh: ClusterView) {
        let mut view = self.table().view().clone();
        if view.merge(&fresh).is_err() {
            view = fresh;
        }
        self.install(view);
    }

    fn table(&self) -> Rc<RoutingTable> {
        self.table.borrow().clone()
    }

    fn store(&self, name: &str) -> Result<(StoreName, StoreConfig), ClientError> {
        let name = StoreName::new(name)
            .map_err(|e| ClientError::new(400, "malformed", &format!("invalid store name {name:?}: {e}")))?;
        match self.table().view().store(&name) {
            Some(config) => Ok((name.clone(), *config)),
            None => Err(ClientError::new(404, "unknown_store", &format!("store {name} does not exist"))),
        }
    }

    fn prefs(&self, key: &[u8], config: &StoreConfig) -> Result<PreferenceList, ClientError> {
        Limits::default().check_key(key).map_err(|e| ClientError::new(400, "malformed", &e.to_string()))?;
        self.table()
            .preferences(key, config, config.n())
            .ok_or_else(|| ClientError::new(503, "unavailable", "the cluster has no ring yet"))
    }

    /// The store's settings, loading the view again once if the store is not in it.
    async fn store_fresh(&self, name: &str) -> Result<(StoreName, StoreConfig), ClientError> {
        if self.closed.get() {
            return Err(ClientError::new(400, "closed", "the client is closed"));
        }
        match self.store(name) {
            Err(e) if e.code == "unknown_store" => {
                let _ = self.refresh().await;
                self.store(name)
            }
            other => other,
        }
    }

    fn note_route(&self, key: &[u8], nodes: Vec<NodeId>) {
        *self.last_route.borrow_mut() = Some(Route { key: key.to_vec(), nodes });
    }

    async fn get(&self, store: &str, key: Vec<u8>) -> Result<(Vec<Vec<u8>>, Option<String>), ClientError> {
        let (name, config) = self.store_fresh(store).await?;
        match self.mode {
            Mode::Https => {
                let prefs = self.prefs(&key, &config)?;
                let (read, route) = https::get(self, &prefs, &name, &key).await;
                self.note_route(&key, route);
                read
            }
            Mode::WebTransport => {
                let timeout = self.timeout;
                let read = self
                    .retrying(&key, &config, |caller, prefs, down| {
                        drive_get(caller, prefs, down, &name, &config, &key, timeout)
                    })
                    .await?;
                let read = read.map_err(|e| ClientError::from_get(&e))?;
                Ok(read_values(&read))
            }
        }
    }

    async fn write(
        &self,
        store: &str,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        context: Option<String>,
    ) -> Result<String, ClientError> {
        let (name, config) = self.store_fresh(store).await?;
        if let Some(value) = &value {
            Limits::default().check_value(value).map_err(|e| ClientError::new(413, "too_large", &e.to_string()))?;
        }
        let parsed = match &context {
            Some(text) => text
                .parse::<CausalContext>()
                .map_err(|e| ClientError::new(400, "invalid_context", &format!("invalid context: {e}")))?,
            None => CausalContext::empty(),
        };
        match self.mode {
            Mode::Https => {
                let prefs = self.prefs(&key, &config)?;
                let write_id = format!("{:032x}", new_write_id().0);
                let (written, route) = https::write(self, &prefs, (&name, &key), (value, context), write_id).await;
                self.note_route(&key, route);
                written
            }
            Mode::WebTransport => {
                let now = io::wall_ms() as u64;
                let write = match value {
                    Some(value) => Write::put(value, parsed, now),
                    None => Write::delete(parsed, now),
                };
                // One id for every attempt: the attempts are one write. Once a node applied it (or
                // may have), attempts go to that node only, which recognises it by its id.
                let write = write.with_id(new_write_id());
                let minter = RefCell::new(None::<NodeId>);
                let state = self
                    .retrying(&key, &config, |caller, prefs, down| {
                        let pinned = minter.borrow().clone();
                        let (write, minter) = (write.clone(), &minter);
                        let target = (&name, key.as_slice());
                        async move {
                            let outcome = drive_put(caller, prefs, down, target, &config, write, pinned).await;
                            if let Some(node) = outcome.as_ref().err().and_then(|e| e.minter()) {
                                *minter.borrow_mut() = Some(node.clone());
                            }
                            outcome
                        }
                    })
                    .await?;
                let state = state.map_err(|e| ClientError::from_put(&e))?;
                Ok(state.context().to_string())
            }
        }
    }

    /// Routes `key` with the current view and runs `run`, again (at most [`RETRIES`] times)
    /// while it fails in a way that may pass, loading the view again first when a node said it
    /// was stale. Notes where the requests went.
    async fn retrying<T, E, F, Fut>(
        &self,
        key: &[u8],
        config: &StoreConfig,
        run: F,
    ) -> Result<Result<T, E>, ClientError>
    where
        E: Retryable,
        F: Fn(Rc<WebCaller>, PreferenceList, Vec<NodeId>) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let (mut attempt, mut route) = (0, Vec::new());
        loop {
            let prefs = self.prefs(key, config)?;
            let down = self.health.held_down(&prefs);
            let caller = self.caller();
            let outcome = run(caller.clone(), prefs, down).await;
            route.extend(caller.asked.borrow().iter().cloned());
            match outcome {
                Err(e) if e.is_retryable() && attempt < RETRIES => {
                    self.settle_before_retry(&caller, attempt).await;
                    attempt += 1;
                }
                other => {
                    self.note_route(key, route);
                    return Ok(other);
                }
            }
        }
    }

    fn caller(&self) -> Rc<WebCaller> {
        Rc::new(WebCaller {
            sessions: self.sessions.clone(),
            table: self.table(),
            timeout: self.timeout,
            next_id: self.next_id.clone(),
            stale: Cell::new(false),
            asked: RefCell::new(Vec::new()),
            liveness: self.health.clone(),
        })
    }

    /// Before trying a request again: loads the view again if a node said it was stale, else
    /// waits a little (50 ms, then 100 ms).
    async fn settle_before_retry(&self, caller: &WebCaller, attempt: u32) {
        if caller.stale.get() {
            let _ = self.refresh().await;
        } else {
            let _ = JsFuture::from(io::sleep(f64::from(50u32 << attempt))).await;
        }
    }

    /// Loads the view again: over WebTransport from the nodes the current view names, else from
    /// the seeds.
    pub(crate) async fn refresh(&self) -> Result<(), ClientError> {
        if self.mode == Mode::WebTransport {
            // A node's status: its view, and its verdicts on the others (held up first).
            let table = self.table();
            let caller = self.caller();
            let (down, up): (Vec<NodeId>, Vec<NodeId>) = table
                .view()
                .membership()
                .ring_members()
                .map(|n| n.id.clone())
                .partition(|n| self.health.liveness.borrow().is_down(n));
            for node in up.into_iter().chain(down) {
                if let Ok(Response::Status(report)) = caller.call(&node, Request::Status).await {
                    self.health.adopt(&report);
                    self.learn(report.view);
                    return Ok(());
                }
            }
        }
        match self.view_from_seeds().await {
            Ok(view) => {
                self.learn(view);
                Ok(())
            }
            Err(e) => {
                // Nobody answered: the view held goes on routing; the next try waits as long.
                self.loaded_at.set(io::monotonic_ms());
                Err(e)
            }
        }
    }

    async fn view_from_seeds(&self) -> Result<ClusterView, ClientError> {
        let mut last = ClientError::new(400, "malformed", "no seeds and no ring: give Client.connect seeds or a ring");
        for seed in &self.seeds {
            match https::ring(self, seed).await {
                Ok(view) => return Ok(view),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    pub(crate) fn fetch(&self) -> &JsValue {
        &self.fetch
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn view(&self) -> Rc<RoutingTable> {
        self.table()
    }

    pub(crate) fn health(&self) -> &Health {
        &self.health
    }
}

/// The values of a read (none for a deleted or absent key) and its context (none when no
/// replica held the key).
fn read_values(read: &GetOutcome) -> (Vec<Vec<u8>>, Option<String>) {
    let values = read.siblings.values().map(|v| v.as_ref().to_vec()).collect();
    let context = (!read.context.is_empty()).then(|| read.context.to_string());
    (values, context)
}

/// The failures a retry may mend.
trait Retryable {
    fn is_retryable(&self) -> bool;
}

impl Retryable for coordinator::GetError {
    fn is_retryable(&self) -> bool {
        coordinator::GetError::is_retryable(self)
    }
}

impl Retryable for coordinator::PutError {
    fn is_retryable(&self) -> bool {
        coordinator::PutError::is_retryable(self)
    }
}

async fn drive_get(
    caller: Rc<WebCaller>,
    prefs: PreferenceList,
    held_down: Vec<NodeId>,
    store: &StoreName,
    config: &StoreConfig,
    key: &[u8],
    timeout: Duration,
) -> Result<GetOutcome, coordinator::GetError> {
    let (required, quorum) = (config.r(), config.quorum_kind());
    let machine = GetCoordinator::new(&prefs, config, &held_down, timeout, Duration::ZERO);
    let read = RoutedRequests::new(store.clone(), key.to_vec());
    let mut repair = read.clone();
    drive::run(
        caller,
        machine,
        move |_to, _read: Read| read.read(),
        coordinator::read_answer,
        move |_to| repair.repair(),
    )
    .await
    .unwrap_or(Err(coordinator::GetError::Unavailable { required, answered: 0, quorum }))
}

async fn drive_put(
    caller: Rc<WebCaller>,
    prefs: PreferenceList,
    held_down: Vec<NodeId>,
    (store, key): (&StoreName, &[u8]),
    config: &StoreConfig,
    write: Write,
    minter: Option<NodeId>,
) -> Result<SealedState, coordinator::PutError> {
    let (required, quorum) = (config.w(), config.quorum_kind());
    let machine = ForwardPut::new(&prefs, config, &held_down, write, minter);
    let requests = RoutedRequests::new(store.clone(), key.to_vec());
    let handed = move |to: &NodeId, write| requests.handed_put(to, write);
    drive::run(caller, machine, handed, coordinator::handed_answer, |_to| None)
        .await
        .unwrap_or(Err(coordinator::PutError::Unavailable { required, acknowledged: 0, minter: None, quorum }))
}

/// A fresh random write id (never zero, which means none).
fn new_write_id() -> WriteId {
    let mut bytes = [0u8; 16];
    io::random_fill(&mut bytes);
    WriteId(u128::from_le_bytes(bytes).max(1))
}
