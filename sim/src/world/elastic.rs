//! Membership changes during the faults (`elastic`; issue 9, 5.1): joins through different
//! members, a leave, and the removal of a node gone for good, each driven as an operator would
//! (a leave asked of the node itself, a removal asked of a member until one takes it).

use std::time::Duration;

use quickv_core::membership::NodeStatus;
use quickv_core::token::Token;
use quickv_core::wire::{Request, Response};

use super::{CHAOS, Event, FaultEvent, Requester, World, address};
use crate::Fault;

/// Nodes a run with `elastic` adds to the cluster during the faults.
pub(super) const SPARES: usize = 2;
/// How soon an operator asks again after a refusal or no answer.
const ASK_AGAIN: Duration = Duration::from_millis(500);
/// How long a spare has to get in before the operator restarts it with another seed.
const REJOIN_AFTER: Duration = Duration::from_secs(3);
/// How often the operator looks whether the cluster shows a node that left as left.
const LOOK_AGAIN: Duration = Duration::from_millis(200);

/// What an operator asked.
#[derive(Clone, Copy, Debug)]
pub(super) enum Ask {
    /// Node `0` to leave.
    Leave(usize),
    /// Some member to remove node `0`.
    Remove(usize),
}

impl World {
    /// The members now: original nodes and spares that have joined, less those that went.
    pub(super) fn live_members(&self) -> Vec<usize> {
        (0..self.members()).filter(|&i| self.nodes[i].member && !self.nodes[i].gone).collect()
    }

    /// Schedules the run's membership changes: each spare joins through a random original
    /// member; one member leaves; another (the fragile one, if any: removing it is the one fault
    /// its disk already counts as) crashes for good and is removed.
    pub(super) fn plan_elastic(&mut self) {
        if !self.options.faults.contains(&Fault::Elastic) || self.options.nodes < 3 {
            return;
        }
        let chaos_ms = CHAOS.as_millis() as u64;
        for spare in self.options.nodes..self.members() {
            let at = Duration::from_millis(self.rng.range(1500, chaos_ms / 2));
            self.schedule_at(at, Event::Fault(FaultEvent::Join(spare)));
        }
        let doomed = match self.fragile {
            Some(fragile) => fragile,
            None => self.rng.below(self.options.nodes as u64) as usize,
        };
        self.doomed = Some(doomed);
        let others: Vec<usize> = (0..self.options.nodes).filter(|&i| i != doomed).collect();
        let leaver = *self.rng.pick(&others);
        let at = Duration::from_millis(self.rng.range(2000, chaos_ms * 3 / 4));
        self.schedule_at(at, Event::Fault(FaultEvent::Ask(Ask::Leave(leaver))));
        let at = Duration::from_millis(self.rng.range(2000, chaos_ms * 3 / 4));
        self.schedule_at(at, Event::Fault(FaultEvent::Doom(doomed)));
    }

    /// A spare starts and joins.
    pub(super) fn join(&mut self, spare: usize) {
        self.stats.faults += 1;
        // Through a member picked now, as an operator would (spares pick apart: joins race
        // through different nodes).
        let seed = self.random_member();
        self.nodes[spare].config.seeds = vec![address(seed)];
        self.nodes[spare].member = true;
        self.start(spare);
        self.schedule_in(REJOIN_AFTER, Event::Fault(FaultEvent::CheckJoined(spare)));
    }

    /// A spare that has not got in (its seed went, or was not in yet) is restarted by the
    /// operator with another seed.
    pub(super) fn check_joined(&mut self, spare: usize) {
        let Some(machine) = self.nodes[spare].machine.as_ref() else { return };
        if machine.has_joined() || self.nodes[spare].gone {
            return;
        }
        self.note(|| format!("n{spare} has not joined: restarted with another seed"));
        let seed = self.random_member();
        self.nodes[spare].config.seeds = vec![address(seed)];
        self.crash(spare);
        self.start(spare);
        self.schedule_in(REJOIN_AFTER, Event::Fault(FaultEvent::CheckJoined(spare)));
    }

    /// Node `i` crashes for good; a second later an operator starts asking to remove it.
    pub(super) fn doom(&mut self, i: usize) {
        self.stats.faults += 1;
        if self.nodes[i].machine.is_some() {
            self.crash(i);
        }
        self.nodes[i].gone = true;
        self.impaired.remove(&i);
        self.nodes[i].paused = false;
        self.schedule_in(Duration::from_secs(1), Event::Fault(FaultEvent::Ask(Ask::Remove(i))));
    }

    /// An operator asks: a leave of the node itself, a removal of a random running member.
    pub(super) fn ask(&mut self, ask: Ask) {
        let target = match ask {
            Ask::Leave(i) => {
                if self.nodes[i].gone {
                    return;
                }
                self.nodes[i].leaving = true;
                i
            }
            Ask::Remove(_) => {
                let running: Vec<usize> =
                    self.live_members().into_iter().filter(|&j| self.nodes[j].machine.is_some()).collect();
                if running.is_empty() {
                    return self.schedule_in(ASK_AGAIN, Event::Fault(FaultEvent::Ask(ask)));
                }
                *self.rng.pick(&running)
            }
        };
        let (Ask::Leave(node) | Ask::Remove(node)) = ask;
        let node = self.ids[node].clone();
        let body = match ask {
            Ask::Leave(_) => Request::Leave { node },
            Ask::Remove(_) => Request::RemoveNode { node },
        };
        self.note(|| format!("operator asks n{target}: {body:?}"));
        self.send_from_client(Requester::Admin { ask }, target, body);
    }

    /// The answer to an operator's request: asked again until acknowledged.
    pub(super) fn admin_answer(&mut self, ask: Ask, response: Option<Response>) {
        self.note(|| format!("operator's {ask:?} answered {response:?}"));
        if response != Some(Response::Ack) {
            self.schedule_in(ASK_AGAIN, Event::Fault(FaultEvent::Ask(ask)));
        }
    }

    /// Node `i` reported it has left: the operator stops it for good once another member
    /// shows it left (as `quickv status` would), so the news is not lost with it.
    pub(super) fn stop_left(&mut self, i: usize) {
        if self.nodes[i].gone {
            return;
        }
        let id = self.ids[i].clone();
        let shown = self
            .live_members()
            .into_iter()
            .any(|j| j != i && self.nodes[j].machine.as_ref().is_some_and(|m| m.view().is_removed(&id)));
        if !shown {
            return self.schedule_in(LOOK_AGAIN, Event::Fault(FaultEvent::StopLeft(i)));
        }
        self.note(|| format!("n{i} has left: stopped"));
        if self.nodes[i].machine.is_some() {
            self.crash(i);
        }
        self.nodes[i].gone = true;
        self.nodes[i].paused = false;
        self.impaired.remove(&i);
    }

    /// With `elastic`, once the faults have stopped and the cluster had time: no ring change is
    /// under way, the ring is the live members, and every node that went is removed, in every
    /// live node's view.
    pub(super) fn membership_settled(&self) -> Vec<String> {
        let mut violations = Vec::new();
        if !self.options.faults.contains(&Fault::Elastic) {
            return violations;
        }
        let live = self.live_members();
        let wanted: Vec<&str> = live.iter().map(|&i| self.ids[i].as_str()).collect();
        for &i in &live {
            let Some(view) = self.nodes[i].machine.as_ref().map(|m| m.view()) else { continue };
            if let Some(t) = view.transition() {
                violations.push(format!("n{i}: a ring change to epoch {} is still under way", t.next.epoch()));
            }
            let ring: Vec<&str> =
                view.ring().map(|r| r.nodes().iter().map(|n| n.id.as_str()).collect()).unwrap_or_default();
            let mut sorted = wanted.clone();
            sorted.sort();
            if ring != sorted {
                violations.push(format!("n{i}'s ring is {ring:?}, the live members are {sorted:?}"));
            }
            for j in (0..self.members()).filter(|&j| self.nodes[j].gone) {
                let status = view.membership().node(&self.ids[j]).map(|n| n.status);
                if status != Some(NodeStatus::Removed) {
                    violations.push(format!("n{i} holds n{j}, which went, as {status:?}"));
                }
            }
        }
        violations
    }

    /// With `elastic`, at the same moment (check 15 of `docs/simulation.md`): no live node
    /// holds a copy of a key it is no replica of, for no hint it holds and with no version it
    /// minted in this incarnation (those are kept on purpose: see `node::shedding`). Old owners
    /// shed what they lose once a change is committed and at every start, drop a damaged copy
    /// rather than rebuild it, and shed a write planned under the previous ring that lands
    /// after the shed.
    pub(super) fn leftover_copies(&self) -> Vec<String> {
        let mut leftovers = Vec::new();
        if !self.options.faults.contains(&Fault::Elastic) {
            return leftovers;
        }
        for i in self.live_members() {
            let Some(view) = self.nodes[i].machine.as_ref().map(|m| m.view()) else { continue };
            let actor = self.nodes[i].machine.as_ref().map(|m| m.actor().clone());
            let disk = &self.nodes[i].disk;
            for (key, record) in disk.durable.iter().filter(|(k, _)| disk.intact(k).is_some()) {
                let Some(config) = view.store(&key.0) else { continue };
                let owner = view
                    .ring()
                    .is_some_and(|r| r.preference_list(Token::of(&key.1), config.n(), 0).is_primary(&self.ids[i]));
                let hinted = disk.hints.keys().any(|(_, k)| k == key);
                let minted = actor.as_ref().is_some_and(|a| record.siblings.history().counter(a) > 0);
                if !owner && !hinted && !minted {
                    leftovers.push(format!(
                        "n{i} holds {}/{}, which it is no replica of, after the ring changes finished",
                        key.0,
                        String::from_utf8_lossy(&key.1)
                    ));
                }
            }
        }
        leftovers
    }
}
