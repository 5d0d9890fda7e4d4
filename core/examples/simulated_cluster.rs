//! A five-node quickv cluster simulated in one process: the real ring, versioning and
//! coordinators, with replicas as in-memory maps and the network as function calls.
//!
//! Run it with `cargo run -p quickv-core --example simulated_cluster`. It shows a key's
//! preference list, a quorum put and get, two concurrent writes becoming siblings and being
//! resolved, a sloppy write while a replica is down (with its hint), and read repair.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use quickv_core::coordinator::{
    Coordinator, GetAction, GetCoordinator, GetOutcome, PutAction, PutCoordinator, PutRequest, ReplicaFailure, Write,
};
use quickv_core::error::{ErrorKind, Refusal};
use quickv_core::identity::NodeId;
use quickv_core::membership::{Membership, NodeInfo};
use quickv_core::ring::{PreferenceList, Ring};
use quickv_core::store::{StoreConfig, StoreName};
use quickv_core::token::Token;
use quickv_core::version::{CausalContext, ContextKey, SealedState, Siblings};

const TIMEOUT: Duration = Duration::from_millis(200);

/// Every node's storage, and which nodes are down.
struct Cluster {
    disks: BTreeMap<NodeId, BTreeMap<Vec<u8>, Siblings>>,
    down: BTreeSet<NodeId>,
    store: StoreName,
    config: StoreConfig,
    /// The cluster secret replicas seal contexts with (a real cluster draws it at random).
    secret: ContextKey,
}

impl Cluster {
    fn put(&mut self, prefs: &PreferenceList, key: &[u8], write: Write) -> anyhow::Result<CausalContext> {
        let mut put = PutCoordinator::new(prefs, &self.config, &[], write, TIMEOUT, Duration::ZERO);
        let mut result = None;
        while let Some(action) = put.poll_action() {
            match action {
                PutAction::Send { to, request } => {
                    let answer = self.replica_write(&to, key, request);
                    put.handle_reply(Duration::ZERO, &to, answer);
                }
                PutAction::Reply(outcome) => result = Some(outcome?.context()),
                // A put never repairs: repairs come with reads.
                PutAction::Repair { .. } => {}
                // A primary nobody stood in for: the minter keeps the write for it.
                PutAction::Hint { to, primary, .. } => println!("    hint: {to} keeps the write for {primary}"),
            }
        }
        for hint in put.hints() {
            println!("    hint: {} holds the write for {}", hint.holder, hint.primary);
        }
        result.ok_or_else(|| anyhow::anyhow!("the put coordinator never replied"))
    }

    fn get(&mut self, prefs: &PreferenceList, key: &[u8]) -> anyhow::Result<GetOutcome> {
        let mut get = GetCoordinator::new(prefs, &self.config, &[], TIMEOUT, Duration::ZERO);
        let mut result = None;
        loop {
            while let Some(action) = get.poll_action() {
                match action {
                    GetAction::Send { to, .. } if self.down.contains(&to) => {}
                    GetAction::Send { to, .. } => {
                        let state = self.disks.entry(to.clone()).or_default().get(key).cloned();
                        let sealed = state.map(|s| self.secret.seal(&self.store, key, s));
                        get.handle_reply(Duration::ZERO, &to, Ok(sealed));
                    }
                    GetAction::Reply(outcome) => result = Some(outcome?),
                    GetAction::Repair { to, siblings } => {
                        println!("    read repair of {to}");
                        self.merge_into(&to, key, &siblings);
                    }
                    // Only puts keep hints.
                    GetAction::Hint { .. } => {}
                }
            }
            // Down nodes never answer: let their requests time out.
            match get.poll_timeout() {
                Some(deadline) => get.handle_timeout(deadline),
                None => break,
            }
        }
        result.ok_or_else(|| anyhow::anyhow!("the get coordinator never replied"))
    }

    fn replica_write(
        &mut self,
        node: &NodeId,
        key: &[u8],
        request: PutRequest,
    ) -> Result<Option<SealedState>, ReplicaFailure> {
        if self.down.contains(node) {
            return Err(ReplicaFailure::Unavailable);
        }
        let refused = |e: String| ReplicaFailure::Refused(Refusal::new(ErrorKind::InvalidContext, e));
        let policy = self.config.conflicts();
        match request {
            PutRequest::Mint { write, .. } => {
                // A replica takes only a context sealed for this key, then mints the write.
                self.secret.check(&self.store, key, &write.context).map_err(|e| refused(e.to_string()))?;
                let state = self.state(node, key);
                state.apply(node, &write, policy).map_err(|e| refused(e.to_string()))?;
                let state = state.clone();
                Ok(Some(self.secret.seal(&self.store, key, state)))
            }
            PutRequest::Replicate { siblings, .. } => {
                self.state(node, key).merge(&siblings, policy);
                Ok(None)
            }
        }
    }

    fn merge_into(&mut self, node: &NodeId, key: &[u8], siblings: &Siblings) {
        let policy = self.config.conflicts();
        self.state(node, key).merge(siblings, policy);
    }

    /// `node`'s stored state of `key` (empty if it has none yet).
    fn state(&mut self, node: &NodeId, key: &[u8]) -> &mut Siblings {
        self.disks.entry(node.clone()).or_default().entry(key.to_vec()).or_default()
    }
}

fn values(s: &Siblings) -> Vec<String> {
    s.values().map(|v| String::from_utf8_lossy(v.as_ref()).into_owned()).collect()
}

fn show(label: &str, read: &GetOutcome) {
    println!("  {label}: {:?}  context {}", values(&read.siblings), read.context);
}

fn main() -> anyhow::Result<()> {
    let mut membership = Membership::new();
    for (i, zone) in ["eu-1", "eu-2", "eu-3", "eu-1", "eu-2"].into_iter().enumerate() {
        let capacity = if i == 4 { 2 } else { 1 };
        membership.upsert(NodeInfo::new(&format!("node-{i}"), &format!("127.0.0.1:71{i:02}"), zone, capacity)?)?;
    }
    let ring = Ring::build(&membership, 12)?;
    println!("ring epoch {} with {} partitions:", ring.epoch(), ring.partition_count());
    for (node, share) in ring.shares() {
        println!("  {node}: {:.1}% of the keys", share * 100.0);
    }

    let mut cluster = Cluster {
        disks: BTreeMap::new(),
        down: BTreeSet::new(),
        store: StoreName::new("default")?,
        config: StoreConfig::quorum(),
        secret: ContextKey::new([7; ContextKey::LEN]),
    };
    let key = b"cart:42";
    let prefs = ring.preference_list(Token::of(key), cluster.config.n(), 2);
    println!(
        "\nkey cart:42 (token {}) lives on {:?}, fallbacks {:?}",
        Token::of(key),
        prefs.primaries(),
        prefs.fallbacks()
    );

    println!("\n1. put and get at quorum ({}):", cluster.config);
    cluster.put(&prefs, key, Write::put(b"apples".to_vec(), CausalContext::empty(), 1))?;
    let read = cluster.get(&prefs, key)?;
    show("get", &read);

    println!("\n2. two writers race with the same context: both versions are kept");
    cluster.put(&prefs, key, Write::put(b"apples,pears".to_vec(), read.context.clone(), 2))?;
    cluster.put(&prefs, key, Write::put(b"apples,plums".to_vec(), read.context.clone(), 3))?;
    let read = cluster.get(&prefs, key)?;
    show("get", &read);
    println!("   a reader merges the siblings and writes back with their context:");
    cluster.put(&prefs, key, Write::put(b"apples,pears,plums".to_vec(), read.context.clone(), 4))?;
    show("get", &cluster.get(&prefs, key)?);

    let down = prefs.primaries()[1].clone();
    println!("\n3. {down} goes down; the sloppy quorum writes to a fallback with a hint");
    cluster.down.insert(down.clone());
    let read = cluster.get(&prefs, key)?;
    cluster.put(&prefs, key, Write::put(b"apples,pears,plums,figs".to_vec(), read.context.clone(), 5))?;
    show("get", &cluster.get(&prefs, key)?);

    println!("\n4. {down} comes back with its old copy; a get repairs it");
    cluster.down.remove(&down);
    show("get", &cluster.get(&prefs, key)?);
    let repaired = cluster.disks[&down].get(&key[..]).cloned().unwrap_or_default();
    println!("  {down} now holds {:?}", values(&repaired));
    Ok(())
}
