//! Smart clients (with [`Fault::SmartClients`]): callers that route by the ring and run core's
//! coordinators themselves, as `quickv-client` does. A read asks the key's replicas with
//! [`GetCoordinator`] and merges their sealed answers into its context; a replica that answered
//! with less is asked to coordinate a read of the key (the client's read repair); a write is
//! handed to one replica with [`ForwardPut`] and retried at the minter a failure names.
//!
//! The client's view is the view of a running node at the moment the request starts, as if it had
//! just fetched it.

use quickv_core::coordinator::{self, Action, Coordinator, ForwardPut, GetCoordinator, ReplicaFailure};
use quickv_core::liveness::PeerState;
use quickv_core::ring::{PreferenceList, RingVersion};
use quickv_core::routing::RoutingTable;
use quickv_core::version::{CausalContext, Write};

use super::*;

/// How many fallbacks a smart client's preference lists carry.
const FALLBACKS: usize = 3;

/// One request a smart client is coordinating.
#[derive(Debug)]
pub(super) struct SmartOp {
    client: usize,
    key: KeyId,
    config: StoreConfig,
    prefs: PreferenceList,
    ring: Option<RingVersion>,
    machine: Machine,
    /// Whether the client has its answer (a read keeps repairing after it).
    replied: bool,
}

#[derive(Debug)]
enum Machine {
    Get { machine: GetCoordinator, repaired: bool },
    Put { machine: ForwardPut, retries: u32 },
}

/// An action of either machine.
enum Step {
    Get(quickv_core::coordinator::GetAction),
    Put(quickv_core::coordinator::ForwardAction),
}

impl World {
    /// Whether client `index` routes its own requests.
    pub(super) fn is_smart(&self, index: usize) -> bool {
        self.options.faults.contains(&Fault::SmartClients) && index < self.options.clients && index.is_multiple_of(2)
    }

    /// Starts op `op` of smart client `client`: `request` is what a plain caller would send.
    pub(super) fn start_smart(&mut self, client: usize, op: usize, request: Request) {
        let (store, key, write) = match request {
            Request::CoordinateGet { store, key } => (store, key, None),
            Request::CoordinatePut { store, key, write, .. } => (store, key, Some(write)),
            other => {
                let target = self.random_member();
                return self.send_from_client(Requester::Client { index: client, op }, target, other);
            }
        };
        let live = self.live_members();
        let first = self.rng.below(live.len() as u64) as usize;
        let asked = (0..live.len()).map(|i| live[(first + i) % live.len()]).find(|i| self.nodes[*i].machine.is_some());
        let view = asked.and_then(|i| self.nodes[i].machine.as_ref()).map(|m| m.view().clone());
        // Routed as the client routes: core's routing table over the view.
        let table = view.map(RoutingTable::new);
        let routed = table.as_ref().and_then(|t| {
            let config = *t.view().store(&store)?;
            Some((config, t.preference_list(&key, config.n(), FALLBACKS)?, t.ring_version()))
        });
        let Some((config, prefs, ring)) = routed else {
            return self.finish_smart_op(client, op, Status::Failed("no view to route with".into()), None);
        };
        // As the client does: the nodes the node it asked holds down are asked last.
        let nodes = prefs.primaries().iter().chain(prefs.fallbacks());
        let held_down: Vec<NodeId> = match asked.and_then(|i| self.nodes[i].machine.as_ref()) {
            Some(m) => nodes.filter(|n| m.peer_state(n) == PeerState::Down).cloned().collect(),
            None => Vec::new(),
        };
        let machine = match write {
            None => Machine::Get {
                machine: GetCoordinator::new(&prefs, &config, &held_down, REPLICA_TIMEOUT, self.now),
                repaired: false,
            },
            Some(write) => {
                Machine::Put { machine: ForwardPut::new(&prefs, &config, &held_down, write, None), retries: 2 }
            }
        };
        let key = (store, key);
        let smart = SmartOp { client, key, config, prefs, ring, machine, replied: false };
        self.smart.insert(op, smart);
        self.drive_smart(op);
    }

    /// A replica's answer (or the transport's report that there is none) to a smart op.
    pub(super) fn smart_answer(&mut self, op: usize, to: NodeId, frame: Result<Vec<u8>, Missing>) {
        let now = self.now;
        if !self.smart.contains_key(&op) {
            return;
        }
        let answer = match frame {
            Ok(frame) => match wire::decode(&frame) {
                Ok(Message::Response { body, .. }) => Ok(body),
                _ => Err(ReplicaFailure::NoAnswer),
            },
            Err(Missing::NotDelivered) => Err(ReplicaFailure::Unavailable),
            Err(Missing::NoAnswer) => Err(ReplicaFailure::NoAnswer),
        };
        self.note(|| format!("op {op} answered by {to}: {answer:?}"));
        let Some(smart) = self.smart.get_mut(&op) else { return };
        match &mut smart.machine {
            Machine::Get { machine, .. } => machine.handle_reply(now, &to, answer.and_then(coordinator::read_answer)),
            Machine::Put { machine, .. } => machine.handle_reply(now, &to, answer.and_then(coordinator::handed_answer)),
        }
        self.drive_smart(op);
    }

    /// A smart read's replica deadline came.
    pub(super) fn smart_timeout(&mut self, op: usize) {
        let now = self.now;
        if let Some(SmartOp { machine: Machine::Get { machine, .. }, .. }) = self.smart.get_mut(&op) {
            machine.handle_timeout(now);
            self.drive_smart(op);
        }
    }

    /// Performs what op `op`'s coordinator asks for; forgets the op once its coordinator is done.
    fn drive_smart(&mut self, op: usize) {
        loop {
            let Some(smart) = self.smart.get_mut(&op) else { return };
            let action = match &mut smart.machine {
                Machine::Get { machine, .. } => machine.poll_action().map(Step::Get),
                Machine::Put { machine, .. } => machine.poll_action().map(Step::Put),
            };
            let Some(action) = action else { break };
            let (store, key) = smart.key.clone();
            match action {
                Step::Get(Action::Send { to, .. }) => self.send_smart(op, to, Request::Get { store, key }),
                Step::Get(Action::Reply(outcome)) => {
                    let client = smart.client;
                    let (status, read) = match outcome {
                        Ok(read) => (Status::Ok, Some((read.siblings, read.context))),
                        Err(e) => (Status::Failed(format!("{e}")), None),
                    };
                    self.finish_smart(op, client, status, read);
                }
                Step::Get(Action::Repair { to, .. }) => {
                    let Machine::Get { repaired, .. } = &mut smart.machine else { continue };
                    // As the client does: the first stale replica coordinates a read, which
                    // repairs every replica that answered with less.
                    if !std::mem::replace(repaired, true)
                        && let Some(target) = self.ids.iter().position(|id| *id == to)
                    {
                        // Nobody waits for the answer (no op has this number).
                        let requester = Requester::Smart { op: usize::MAX, to };
                        self.send_from_client(requester, target, Request::CoordinateGet { store, key });
                    }
                }
                Step::Put(Action::Send { to, request: write }) => {
                    self.note(|| format!("op {op} handed to {to}"));
                    self.send_smart(op, to.clone(), Request::CoordinatePut { store, key, write, minter: Some(to) });
                }
                // A forwarded put never repairs, and neither machine keeps hints (the node that
                // coordinates does).
                Step::Put(Action::Repair { .. } | Action::Hint { .. }) | Step::Get(Action::Hint { .. }) => {}
                Step::Put(Action::Reply(Ok(_))) => {
                    let client = smart.client;
                    self.finish_smart(op, client, Status::Ok, None);
                }
                Step::Put(Action::Reply(Err(e))) => {
                    let client = smart.client;
                    let (prefs, config) = (smart.prefs.clone(), smart.config);
                    let Machine::Put { machine, retries } = &mut smart.machine else { continue };
                    match e.minter().cloned() {
                        // The same write, to the node that applied it (or may have) only.
                        Some(minter) if *retries > 0 && e.is_retryable() => {
                            *retries -= 1;
                            let write: Write = machine.write().clone();
                            *machine = ForwardPut::new(&prefs, &config, &[], write, Some(minter.clone()));
                            self.stats.retries += 1;
                            self.note(|| format!("c{client} op {op} retried at {minter} ({e})"));
                        }
                        _ => self.finish_smart(op, client, Status::Failed(format!("{e}")), None),
                    }
                }
            }
        }
        let Some(smart) = self.smart.get(&op) else { return };
        let (finished, deadline) = match &smart.machine {
            Machine::Get { machine, .. } => (machine.is_finished(), machine.poll_timeout()),
            Machine::Put { machine, .. } => (machine.is_finished(), machine.poll_timeout()),
        };
        if finished && smart.replied {
            self.smart.remove(&op);
        } else if let Some(at) = deadline {
            self.schedule_at(at.max(self.now), Event::SmartTimeout { op });
        }
    }

    fn send_smart(&mut self, op: usize, to: NodeId, body: Request) {
        let Some(target) = self.ids.iter().position(|id| *id == to) else {
            return self.schedule_in(
                Duration::ZERO,
                Event::Answer { requester: Requester::Smart { op, to }, frame: Err(Missing::NotDelivered) },
            );
        };
        let ring = self.smart.get(&op).and_then(|s| s.ring);
        let message = match (ring, &body) {
            // Replica reads are routed with the client's ring, as the client sends them.
            (Some(ring), Request::Get { .. }) => Message::Routed { id: 1, ring, body },
            _ => Message::Request { id: 1, body },
        };
        self.send_message_from_client(Requester::Smart { op, to }, target, message);
    }

    fn finish_smart(&mut self, op: usize, client: usize, status: Status, read: Option<(Siblings, CausalContext)>) {
        if let Some(smart) = self.smart.get_mut(&op)
            && std::mem::replace(&mut smart.replied, true)
        {
            return;
        }
        self.finish_smart_op(client, op, status, read);
    }

    /// Records the outcome of a smart op and lets the client go on.
    fn finish_smart_op(&mut self, client: usize, op: usize, status: Status, read: Option<(Siblings, CausalContext)>) {
        self.note(|| format!("c{client} op {op} (smart) answered: {status:?}"));
        let record = &mut self.history[op];
        record.status = status;
        if let Some((siblings, context)) = read {
            self.clients[client].remember_read(&record.key, context, &siblings);
            record.read = Some(siblings);
        }
        self.clients[client].pending = None;
        self.client_done(client, op);
    }
}
