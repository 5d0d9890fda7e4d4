//! Coordinators under every order of replies, failures and timeouts.
//!
//! A scenario fixes each node's fate (answers, is unreachable, times out, refuses) and the order
//! in which outstanding requests resolve. Checked after every event:
//! - the machine replies exactly once, and only to nodes of the preference list (fallbacks only
//!   under a sloppy quorum), asking each node at most once;
//! - success comes as soon as the quorum is met, never before;
//! - failure comes as soon as no continuation could succeed, never before (the oracle is a
//!   clone of the machine that may not fail early, driven as if every node answered).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::ToString;
use alloc::vec::Vec;
use core::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::error::ErrorKind;
use crate::identity::NodeId;
use crate::ring::PreferenceList;
use crate::store::{ConflictPolicy, QuorumKind, StoreConfig};
use crate::token::Token;
use crate::version::{CausalContext, SealedState, Siblings, Write};
use crate::wire::{ErrorReply, Response};

fn refusal(message: &str) -> Refusal {
    Refusal::new(ErrorKind::InvalidContext, message)
}

const TIMEOUT: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Answers,
    Unreachable,
    TimesOut,
    Refuses,
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        6 => Just(Fate::Answers),
        2 => Just(Fate::Unreachable),
        2 => Just(Fate::TimesOut),
        1 => Just(Fate::Refuses),
    ]
}

/// What the driver sees of an action.
#[derive(Debug)]
enum Act {
    Send(NodeId),
    Reply {
        ok: bool,
        unavailable: bool,
    },
    Repair(NodeId),
    /// A last-resort hint (a put's): asks nothing that counts.
    Hint,
}

trait Machine: Clone {
    fn next(&mut self) -> Option<Act>;
    fn answer(&mut self, now: Duration, node: &NodeId, fate: Fate);
    fn timeout(&mut self, now: Duration);
    fn finished(&self) -> bool;
    fn make_patient(&mut self);
    /// Whether `node` answering with `fate` counts toward the quorum.
    fn counts(&self, node: &NodeId, fate: Fate) -> bool {
        let _ = node;
        fate == Fate::Answers
    }
    /// `node` answers as well as it could (for the oracle).
    fn answer_best(&mut self, now: Duration, node: &NodeId) {
        self.answer(now, node, Fate::Answers);
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    n: usize,
    quorum: usize,
    kind: QuorumKind,
    fallbacks: usize,
    fates: Vec<Fate>,
    order: Vec<prop::sample::Index>,
    data: Vec<usize>,
    /// Per node of the preference list (primaries, then fallbacks): whether the caller holds it
    /// down.
    down: Vec<bool>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        1usize..=5,
        1usize..=5,
        prop_oneof![Just(QuorumKind::Sloppy), Just(QuorumKind::Strict)],
        0usize..=3,
        proptest::collection::vec(fate(), 8),
        proptest::collection::vec(any::<prop::sample::Index>(), 16),
        proptest::collection::vec(0usize..4, 8),
        proptest::collection::vec(prop::bool::weighted(0.25), 8),
    )
        .prop_map(|(n, q, kind, fallbacks, fates, order, data, down)| Scenario {
            n,
            quorum: q.min(n),
            kind,
            fallbacks,
            fates,
            order,
            data,
            down,
        })
}

impl Scenario {
    fn config(&self) -> StoreConfig {
        let q = self.quorum as u8;
        StoreConfig::new(self.n as u8, q, q, self.kind, ConflictPolicy::Siblings).unwrap()
    }

    fn prefs(&self) -> PreferenceList {
        let primaries = (0..self.n).map(|i| node(&format!("p{i}"))).collect();
        let fallbacks = (0..self.fallbacks).map(|i| node(&format!("f{i}"))).collect();
        PreferenceList::from_parts(Token(0), primaries, fallbacks)
    }

    fn fates(&self) -> BTreeMap<NodeId, Fate> {
        let prefs = self.prefs();
        prefs.primaries().iter().chain(prefs.fallbacks()).cloned().zip(self.fates.iter().copied()).collect()
    }

    /// The nodes the caller holds down.
    fn held_down(&self) -> Vec<NodeId> {
        let prefs = self.prefs();
        let nodes = prefs.primaries().iter().chain(prefs.fallbacks());
        nodes.zip(&self.down).filter(|(_, down)| **down).map(|(n, _)| n.clone()).collect()
    }

    fn allowed(&self) -> Vec<NodeId> {
        let prefs = self.prefs();
        let mut allowed = prefs.primaries().to_vec();
        if self.kind == QuorumKind::Sloppy {
            allowed.extend(prefs.fallbacks().iter().cloned());
        }
        allowed
    }
}

fn node(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

/// Whether the machine could still succeed if every outstanding and future request answered.
fn could_succeed<M: Machine>(machine: &M, inflight: &[(NodeId, Duration)], now: Duration) -> bool {
    let mut m = machine.clone();
    m.make_patient();
    let mut queue: Vec<NodeId> = inflight.iter().map(|(n, _)| n.clone()).collect();
    loop {
        while let Some(act) = m.next() {
            match act {
                Act::Send(n) => queue.push(n),
                Act::Reply { ok, .. } => return ok,
                Act::Repair(_) | Act::Hint => {}
            }
        }
        if queue.is_empty() {
            return false;
        }
        let n = queue.remove(0);
        m.answer_best(now, &n);
    }
}

/// A machine with the requests still outstanding and the time, for the oracle.
type Snapshot<M> = (M, Vec<(NodeId, Duration)>, Duration);

struct Run {
    replies: Vec<bool>,
    repairs: Vec<NodeId>,
}

fn drive<M: Machine>(m: &mut M, s: &Scenario) -> Result<Run, TestCaseError> {
    let fates = s.fates();
    let allowed = s.allowed();
    let mut now = Duration::ZERO;
    let mut inflight: Vec<(NodeId, Duration)> = Vec::new();
    let mut asked: Vec<NodeId> = Vec::new();
    let mut replies = Vec::new();
    let mut repairs = Vec::new();
    let mut answered = 0usize;
    let mut step = 0;
    let mut pre: Option<Snapshot<M>> = None;
    let mut timed_out = false;
    loop {
        while let Some(act) = m.next() {
            match act {
                Act::Send(n) => {
                    prop_assert!(allowed.contains(&n), "sent to {n}, not allowed");
                    prop_assert!(!asked.contains(&n), "asked {n} twice");
                    prop_assert!(replies.is_empty() || replies[0], "sent after failing");
                    asked.push(n.clone());
                    inflight.push((n, now + TIMEOUT));
                }
                Act::Reply { ok, unavailable } => {
                    prop_assert!(replies.is_empty(), "replied twice");
                    if ok {
                        prop_assert!(answered >= s.quorum, "succeeded with {answered} of {}", s.quorum);
                    }
                    if unavailable {
                        // Never before the quorum is out of reach: the event that led here, on a
                        // machine that may not fail early, could not end in success either.
                        if let Some((p, pinflight, pnow)) = pre.take() {
                            prop_assert!(!could_succeed(&p, &pinflight, pnow), "failed early");
                        }
                    }
                    replies.push(ok);
                }
                Act::Repair(n) => repairs.push(n),
                Act::Hint => {}
            }
        }
        if replies.is_empty() {
            prop_assert!(answered < s.quorum, "quorum of {answered} met but no reply");
            prop_assert!(could_succeed(&*m, &inflight, now), "quorum out of reach but no reply");
        }
        if inflight.is_empty() || m.finished() {
            break;
        }
        let i = s.order.get(step).map_or(0, |ix| ix.index(inflight.len()));
        step += 1;
        let (n, deadline) = inflight.remove(i);
        let fate = fates[&n];
        let before = (*m).clone();
        match fate {
            Fate::TimesOut => {
                timed_out = true;
                now = now.max(deadline);
                inflight.retain(|(_, d)| *d > now);
                m.timeout(now);
            }
            _ => {
                if m.counts(&n, fate) {
                    answered += 1;
                }
                m.answer(now, &n, fate);
            }
        }
        // Keep the pre-event machine with the event applied patiently, for the early-fail check.
        let mut patient = before;
        patient.make_patient();
        match fate {
            Fate::TimesOut => patient.timeout(now),
            _ => patient.answer(now, &n, fate),
        }
        pre = Some((patient, inflight.clone(), now));
    }
    prop_assert_eq!(replies.len(), 1, "no reply");
    // Nodes held down are the last resort: when enough nodes held up answer to meet the quorum,
    // none held down is asked. (A timeout expires every request due at that moment, answering
    // or not, and a refusing primary is not replaced by a fallback, so runs with either are left
    // out.)
    let held_down = s.held_down();
    let refused = asked.iter().any(|n| fates[n] == Fate::Refuses);
    let up_and_counting = allowed.iter().filter(|n| !held_down.contains(n) && m.counts(n, fates[*n])).count();
    if up_and_counting >= s.quorum && !timed_out && !refused {
        let asked_down: Vec<&NodeId> = asked.iter().filter(|n| held_down.contains(n)).collect();
        prop_assert!(
            asked_down.is_empty(),
            "asked {:?}, held down, with {} held up answering",
            asked_down,
            up_and_counting
        );
    }
    if inflight.is_empty() {
        prop_assert!(m.finished());
    }
    Ok(Run { replies, repairs })
}

// --- get --------------------------------------------------------------------------------------

#[derive(Clone)]
struct GetHarness {
    m: GetCoordinator,
    data: BTreeMap<NodeId, Option<Siblings>>,
    /// States answered before the reply, and in all.
    before_reply: Vec<Siblings>,
    all: Vec<(NodeId, Option<Siblings>)>,
    result: Option<Siblings>,
    replied: bool,
}

fn sample_states() -> Vec<Option<Siblings>> {
    let (a, b) = (node("p0"), node("p1"));
    let policy = ConflictPolicy::Siblings;
    let mut one = Siblings::new();
    one.apply(&a, &Write::put(b"x".to_vec(), CausalContext::empty(), 1), policy).unwrap();
    let mut two = one.clone();
    let seen = CausalContext::from_parts([crate::version::ContextPart::new(
        one.history().clone(),
        one.latest(),
        crate::version::Seal::NONE,
    )]);
    two.apply(&a, &Write::put(b"y".to_vec(), seen, 2), policy).unwrap();
    let mut other = Siblings::new();
    other.apply(&b, &Write::put(b"z".to_vec(), CausalContext::empty(), 3), policy).unwrap();
    alloc::vec![None, Some(one), Some(two), Some(other)]
}

impl Machine for GetHarness {
    fn next(&mut self) -> Option<Act> {
        Some(match self.m.poll_action()? {
            GetAction::Send { to, .. } => Act::Send(to),
            GetAction::Reply(outcome) => {
                self.replied = true;
                let unavailable = matches!(outcome, Err(GetError::Unavailable { .. }));
                let ok = outcome.is_ok();
                self.result = outcome.ok().map(|o| o.siblings);
                Act::Reply { ok, unavailable }
            }
            GetAction::Repair { to, .. } => Act::Repair(to),
            GetAction::Hint { to, .. } => panic!("a get asked {to} to keep a hint"),
        })
    }

    fn answer(&mut self, now: Duration, node: &NodeId, fate: Fate) {
        let answer = match fate {
            Fate::Answers => {
                let state = self.data.get(node).cloned().flatten();
                if !self.replied {
                    self.before_reply.extend(state.clone());
                }
                self.all.push((node.clone(), state.clone()));
                Ok(state.map(SealedState::unsealed))
            }
            Fate::Refuses => Err(ReplicaFailure::Refused(refusal("no"))),
            _ => Err(ReplicaFailure::Unavailable),
        };
        self.m.handle_reply(now, node, answer);
    }

    fn timeout(&mut self, now: Duration) {
        self.m.handle_timeout(now);
    }

    fn finished(&self) -> bool {
        self.m.is_finished()
    }

    fn make_patient(&mut self) {
        self.m.patient = true;
    }

    /// A fallback without the key answers nothing that counts toward R.
    fn counts(&self, node: &NodeId, fate: Fate) -> bool {
        fate == Fate::Answers && (is_primary(node) || self.data.get(node).is_some_and(Option::is_some))
    }

    /// At best a node holds the key (a fallback with a hinted write).
    fn answer_best(&mut self, now: Duration, node: &NodeId) {
        if self.data.get(node).is_none_or(Option::is_none) && !is_primary(node) {
            let mut hinted = Siblings::new();
            let write = Write::put(b"hinted".to_vec(), CausalContext::empty(), 1);
            hinted.apply(node, &write, ConflictPolicy::Siblings).unwrap();
            self.data.insert(node.clone(), Some(hinted));
        }
        self.answer(now, node, Fate::Answers);
    }
}

fn is_primary(node: &NodeId) -> bool {
    node.as_str().starts_with('p')
}

fn merge_all<'a>(states: impl IntoIterator<Item = &'a Siblings>) -> Siblings {
    let mut merged = Siblings::new();
    for s in states {
        merged.merge(s, ConflictPolicy::Siblings);
    }
    merged
}

// --- put --------------------------------------------------------------------------------------

#[derive(Clone)]
struct PutHarness {
    m: PutCoordinator,
    requests: BTreeMap<NodeId, PutRequest>,
    stored: BTreeMap<NodeId, Siblings>,
    outcome: Option<PutOutcome>,
    /// Last-resort hints asked for: (holder, primary).
    kept: Vec<(NodeId, NodeId)>,
    /// Nodes whose refusal reached the machine.
    refused: Vec<NodeId>,
    /// Whether a minter that will apply the write says so at once ([`PutCoordinator::handle_minted`]),
    /// before it answers (as a node minting a put it coordinates does).
    release: bool,
    fates: BTreeMap<NodeId, Fate>,
    /// Minted states released, by minter, until it answers.
    released: BTreeMap<NodeId, Siblings>,
    now: Duration,
}

impl PutHarness {
    fn new(s: &Scenario, m: PutCoordinator, release: bool) -> PutHarness {
        PutHarness {
            m,
            requests: BTreeMap::new(),
            stored: BTreeMap::new(),
            outcome: None,
            kept: Vec::new(),
            refused: Vec::new(),
            release,
            fates: s.fates(),
            released: BTreeMap::new(),
            now: Duration::ZERO,
        }
    }
}

impl Machine for PutHarness {
    fn next(&mut self) -> Option<Act> {
        Some(match self.m.poll_action()? {
            PutAction::Send { to, request } => {
                // A minter that applies the write (it answers, or its answer is lost after) may
                // release the state before its answer; one that refuses or is unreachable never.
                let applies = matches!(self.fates[&to], Fate::Answers | Fate::TimesOut);
                if let (true, true, PutRequest::Mint { write, .. }) = (self.release, applies, &request) {
                    let mut state = self.stored.get(&to).cloned().unwrap_or_default();
                    state.apply(&to, write, ConflictPolicy::Siblings).unwrap();
                    self.released.insert(to.clone(), state.clone());
                    self.m.handle_minted(self.now, &to, SealedState::unsealed(state));
                }
                self.requests.insert(to.clone(), request);
                Act::Send(to)
            }
            PutAction::Reply(outcome) => {
                let unavailable = matches!(outcome, Err(PutError::Unavailable { .. }));
                let ok = outcome.is_ok();
                self.outcome = outcome.ok();
                Act::Reply { ok, unavailable }
            }
            PutAction::Repair { to, .. } => panic!("a put asked to repair {to}"),
            PutAction::Hint { to, primary, .. } => {
                self.kept.push((to, primary));
                Act::Hint
            }
        })
    }

    fn answer(&mut self, now: Duration, node: &NodeId, fate: Fate) {
        self.now = now;
        let released = self.released.remove(node);
        let answer = match fate {
            Fate::Answers => {
                let state = self.stored.entry(node.clone()).or_default();
                match &self.requests[node] {
                    PutRequest::Mint { .. } if let Some(minted) = released => {
                        *state = minted;
                        Ok(Some(SealedState::unsealed(state.clone())))
                    }
                    PutRequest::Mint { write, .. } => {
                        state.apply(node, write, ConflictPolicy::Siblings).unwrap();
                        Ok(Some(SealedState::unsealed(state.clone())))
                    }
                    PutRequest::Replicate { siblings, .. } => {
                        state.merge(siblings, ConflictPolicy::Siblings);
                        Ok(None)
                    }
                }
            }
            Fate::Refuses => {
                self.refused.push(node.clone());
                Err(ReplicaFailure::Refused(refusal("no")))
            }
            _ => Err(ReplicaFailure::Unavailable),
        };
        self.m.handle_reply(now, node, answer);
    }

    fn timeout(&mut self, now: Duration) {
        self.now = now;
        self.m.handle_timeout(now);
    }

    fn finished(&self) -> bool {
        self.m.is_finished()
    }

    fn make_patient(&mut self) {
        self.m.patient = true;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn get_replies_once_at_the_right_moment_and_repairs_stale_replicas(s in scenario()) {
        let states = sample_states();
        let prefs = s.prefs();
        let data = prefs.primaries().iter().chain(prefs.fallbacks()).cloned()
            .zip(s.data.iter().map(|&i| states[i].clone())).collect();
        let m = GetCoordinator::new(&prefs, &s.config(), &s.held_down(), TIMEOUT, Duration::ZERO);
        let mut h = GetHarness { m, data, before_reply: Vec::new(), all: Vec::new(), result: None, replied: false };
        let run = drive(&mut h, &s)?;
        if let Some(result) = &h.result {
            prop_assert_eq!(result, &merge_all(&h.before_reply));
        }
        if h.m.is_finished() && run.replies[0] {
            let merged = merge_all(h.all.iter().filter_map(|(_, s)| s.as_ref()));
            let mut expected: Vec<NodeId> = if merged == Siblings::new() { Vec::new() } else {
                h.all.iter()
                    .filter(|(n, st)| prefs.is_primary(n) && st.as_ref() != Some(&merged))
                    .map(|(n, _)| n.clone()).collect()
            };
            let mut got = run.repairs.clone();
            expected.sort();
            got.sort();
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn put_replies_once_at_the_right_moment_and_names_its_hints(s in scenario()) {
        check_put(&s, false)?;
    }

    /// The same, with a minter that releases the minted state before its own answer
    /// ([`PutCoordinator::handle_minted`]): its answer still counts only when it comes.
    #[test]
    fn put_that_replicates_while_its_minter_syncs_replies_at_the_right_moment(s in scenario()) {
        check_put(&s, true)?;
    }
}

/// Runs a put through scenario `s` and checks what it did (see the module docs); `release`: as
/// [`PutHarness::release`].
fn check_put(s: &Scenario, release: bool) -> Result<(), TestCaseError> {
    {
        let prefs = s.prefs();
        let write = Write::put(b"v".to_vec(), CausalContext::empty(), 7);
        let m = PutCoordinator::new(&prefs, &s.config(), &s.held_down(), write, TIMEOUT, Duration::ZERO);
        let mut h = PutHarness::new(s, m, release);
        drive(&mut h, s)?;
        let fates = s.fates();
        // The node that minted: it answered, or (released) it replicated before its answer was lost.
        let applied = |fate: Fate| fate == Fate::Answers || (release && fate == Fate::TimesOut);
        let minter = h
            .requests
            .iter()
            .find(|(n, r)| matches!(r, PutRequest::Mint { .. }) && applied(fates[*n]))
            .map(|(n, _)| n.clone());
        // Last-resort hints are kept by the minter, once per primary, for primaries that did not
        // take the write (it failed, or timed out with others due at the same moment).
        let took = |n: &NodeId| h.stored.get(n).is_some_and(|s| s.values().count() > 0);
        let mut primaries_kept: Vec<&NodeId> = h.kept.iter().map(|(_, p)| p).collect();
        primaries_kept.sort();
        primaries_kept.dedup();
        prop_assert_eq!(primaries_kept.len(), h.kept.len(), "a primary hinted twice");
        // (A primary held down may be asked after its hint, when W could no longer be met
        // without it.)
        let held_down = s.held_down();
        for (holder, primary) in &h.kept {
            prop_assert_eq!(Some(holder), minter.as_ref());
            prop_assert!(prefs.is_primary(primary));
            let asked_later = held_down.contains(primary);
            prop_assert!(asked_later || (!took(primary) && !h.refused.contains(primary)), "{} hinted", primary);
        }
        // 2.2: once a put that succeeded is finished, every primary that did not take the write
        // (and did not refuse it) is covered: by a fallback that took it for it, or by a
        // last-resort hint at the minter.
        if h.outcome.is_some() && h.m.is_finished() {
            for p in prefs.primaries() {
                // A minter that released the state holds the write in its own store, whose
                // answer was lost here (a store that fails is brought back by anti-entropy from
                // the W nodes that acknowledged: no node keeps a hint for itself).
                let released_here = release && minter.as_ref() == Some(p);
                if took(p) || h.refused.contains(p) || released_here {
                    continue;
                }
                let by_fallback = h.requests.iter().any(|(n, r)| {
                    let (PutRequest::Mint { hint_for, .. } | PutRequest::Replicate { hint_for, .. }) = r;
                    hint_for.as_ref() == Some(p) && took(n)
                });
                let kept = h.kept.iter().any(|(_, k)| k == p);
                prop_assert!(by_fallback || kept, "{} did not take the write and nothing holds it for it", p);
            }
        }
        if let Some(outcome) = &h.outcome {
            prop_assert!(outcome.acknowledged.len() >= s.quorum);
            prop_assert_eq!(outcome.state.siblings.values().count(), 1);
            for hint in &outcome.hints {
                prop_assert!(prefs.fallbacks().contains(&hint.holder));
                prop_assert!(prefs.is_primary(&hint.primary));
                prop_assert_eq!(s.kind, QuorumKind::Sloppy);
            }
            prop_assert!(h.m.hints().starts_with(&outcome.hints));
            // Every acknowledging node holds the write.
            for n in &outcome.acknowledged {
                prop_assert_eq!(h.stored[n].values().count(), 1);
            }
        }
        // One mint at a time, and mints at fallbacks carry a hint.
        let mints = h.requests.values().filter(|r| matches!(r, PutRequest::Mint { .. })).count();
        prop_assert!(mints >= 1);
        for (n, r) in &h.requests {
            let (PutRequest::Mint { hint_for, .. } | PutRequest::Replicate { hint_for, .. }) = r;
            prop_assert_eq!(hint_for.is_some(), !prefs.is_primary(n));
        }
    }
    Ok(())
}

#[test]
fn strict_quorum_fails_at_once_when_too_few_primaries_exist() {
    let prefs = PreferenceList::from_parts(Token(0), alloc::vec![node("p0")], alloc::vec![node("f0")]);
    let mut get = GetCoordinator::new(&prefs, &StoreConfig::strict(), &[], TIMEOUT, Duration::ZERO);
    assert_eq!(get.poll_action(), Some(GetAction::Send { to: node("p0"), request: Read }));
    assert_eq!(
        get.poll_action(),
        Some(GetAction::Reply(Err(GetError::Unavailable { required: 2, answered: 0, quorum: QuorumKind::Strict })))
    );
    assert!(get.is_finished());
    // Issue 8, 2.1: a strict store's quorum failure says that fallbacks never count.
    let e = GetError::Unavailable { required: 2, answered: 0, quorum: QuorumKind::Strict };
    assert!(format!("{e}").ends_with("a strict store counts its N primaries only, never fallbacks"), "{e}");
    let e = GetError::Unavailable { required: 2, answered: 0, quorum: QuorumKind::Sloppy };
    assert!(!format!("{e}").contains("strict"), "{e}");
}

/// Issue 8, 2.3: a fallback's empty answer never counts toward R: with two of three primaries
/// down, a key written to them reads as unavailable, not as absent; a fallback holding a hinted
/// write of the key counts.
#[test]
fn an_empty_fallback_never_counts_toward_r() {
    let prefs = PreferenceList::from_parts(
        Token(0),
        alloc::vec![node("p0"), node("p1"), node("p2")],
        alloc::vec![node("f0"), node("f1")],
    );
    let now = Duration::ZERO;
    let mut get = GetCoordinator::new(&prefs, &StoreConfig::quorum(), &[], TIMEOUT, now);
    while get.poll_action().is_some() {}
    get.handle_reply(now, &node("p0"), Ok(None));
    get.handle_reply(now, &node("p1"), Err(ReplicaFailure::Unavailable));
    get.handle_reply(now, &node("p2"), Err(ReplicaFailure::Unavailable));
    get.handle_reply(now, &node("f0"), Ok(None));
    get.handle_reply(now, &node("f1"), Ok(None));
    let actions: Vec<_> = core::iter::from_fn(|| get.poll_action()).collect();
    assert!(
        actions.contains(&GetAction::Reply(Err(GetError::Unavailable {
            required: 2,
            answered: 1,
            quorum: QuorumKind::Sloppy
        }))),
        "{actions:?}"
    );

    let mut hinted = Siblings::new();
    hinted.apply(&node("f0"), &Write::put(b"v".to_vec(), CausalContext::empty(), 1), ConflictPolicy::Siblings).unwrap();
    let mut get = GetCoordinator::new(&prefs, &StoreConfig::quorum(), &[], TIMEOUT, now);
    while get.poll_action().is_some() {}
    get.handle_reply(now, &node("p0"), Ok(None));
    get.handle_reply(now, &node("p1"), Err(ReplicaFailure::Unavailable));
    get.handle_reply(now, &node("f0"), Ok(Some(SealedState::unsealed(hinted.clone()))));
    let reply = core::iter::from_fn(|| get.poll_action()).find(|a| matches!(a, GetAction::Reply(_)));
    let Some(GetAction::Reply(Ok(read))) = reply else { panic!("{reply:?}") };
    assert_eq!(read.siblings, hinted);
}

#[test]
fn sloppy_put_hands_a_dead_primarys_share_to_a_fallback_with_a_hint() {
    let prefs =
        PreferenceList::from_parts(Token(0), alloc::vec![node("p0"), node("p1"), node("p2")], alloc::vec![node("f0")]);
    let write = Write::put(b"v".to_vec(), CausalContext::empty(), 1);
    let mut put = PutCoordinator::new(&prefs, &StoreConfig::quorum(), &[], write, TIMEOUT, Duration::ZERO);
    let Some(PutAction::Send { to, request: PutRequest::Mint { write, hint_for: None } }) = put.poll_action() else {
        panic!("expected a mint at p0")
    };
    assert_eq!(to, node("p0"));
    // p0 is down: p1 mints instead.
    put.handle_reply(Duration::ZERO, &to, Err(ReplicaFailure::Unavailable));
    let Some(PutAction::Send { to, .. }) = put.poll_action() else { panic!() };
    assert_eq!(to, node("p1"));
    let mut state = Siblings::new();
    state.apply(&to, &write, ConflictPolicy::Siblings).unwrap();
    put.handle_reply(Duration::ZERO, &to, Ok(Some(SealedState::unsealed(state.clone()))));
    let mut sent = Vec::new();
    while let Some(PutAction::Send { to, request: PutRequest::Replicate { hint_for, .. } }) = put.poll_action() {
        sent.push((to, hint_for));
    }
    sent.sort();
    assert_eq!(sent, [(node("f0"), Some(node("p0"))), (node("p2"), None)]);
    // The fallback acknowledges first: W=2 is met with one hint.
    put.handle_reply(Duration::ZERO, &node("f0"), Ok(None));
    let Some(PutAction::Reply(Ok(outcome))) = put.poll_action() else { panic!() };
    assert_eq!(outcome.hints, [Hint { holder: node("f0"), primary: node("p0") }]);
    assert!(!put.is_finished(), "still waiting for p2");
    // p2 times out with no fallback left: the minter keeps the write for it.
    put.handle_timeout(TIMEOUT);
    let Some(PutAction::Hint { to, primary, siblings }) = put.poll_action() else { panic!("expected a hint") };
    assert_eq!((to, primary, siblings), (node("p1"), node("p2"), state));
    assert!(put.is_finished());
    assert_eq!(put.hints(), outcome.hints);
}

/// 3.8: one replica's refusal is one failed replica; a request fails only when its quorum can no
/// longer be met, and says why when every failure was a refusal.
#[test]
fn a_refusing_replica_is_one_failed_replica() {
    let unknown = || Refusal::new(ErrorKind::UnknownStore, "store s does not exist");
    let prefs = PreferenceList::from_parts(Token(0), alloc::vec![node("p0"), node("p1"), node("p2")], Vec::new());
    let write = Write::put(b"v".to_vec(), CausalContext::empty(), 1);
    // p0 does not know the store yet: p1 mints, p2 replicates, W=2 is met.
    let mut put = PutCoordinator::new(&prefs, &StoreConfig::strict(), &[], write.clone(), TIMEOUT, Duration::ZERO);
    put.poll_action();
    put.handle_reply(Duration::ZERO, &node("p0"), Err(ReplicaFailure::Refused(unknown())));
    let Some(PutAction::Send { to, .. }) = put.poll_action() else { panic!("expected a mint at p1") };
    assert_eq!(to, node("p1"));
    let mut state = Siblings::new();
    state.apply(&to, &write, ConflictPolicy::Siblings).unwrap();
    put.handle_reply(Duration::ZERO, &to, Ok(Some(SealedState::unsealed(state))));
    let Some(PutAction::Send { to, .. }) = put.poll_action() else { panic!("expected a replicate to p2") };
    assert_eq!(to, node("p2"));
    put.handle_reply(Duration::ZERO, &to, Ok(None));
    assert!(matches!(put.poll_action(), Some(PutAction::Reply(Ok(_)))));

    // Every node refuses the context: the put fails with the reason, not retryable.
    let mut put = PutCoordinator::new(&prefs, &StoreConfig::strict(), &[], write, TIMEOUT, Duration::ZERO);
    for n in ["p0", "p1"] {
        let Some(PutAction::Send { to, .. }) = put.poll_action() else { panic!("expected a mint at {n}") };
        assert_eq!(to, node(n));
        put.handle_reply(Duration::ZERO, &to, Err(ReplicaFailure::Refused(refusal("forged context"))));
    }
    let Some(PutAction::Reply(Err(e))) = put.poll_action() else { panic!("expected a failure") };
    assert_eq!(e.to_string(), "the write was refused: forged context");
    assert!(!e.is_retryable());
    assert!(put.is_finished());

    // A read: one replica refuses, two answer: R=2 is met.
    let mut get = GetCoordinator::new(&prefs, &StoreConfig::strict(), &[], TIMEOUT, Duration::ZERO);
    while get.poll_action().is_some() {}
    get.handle_reply(Duration::ZERO, &node("p0"), Err(ReplicaFailure::Refused(unknown())));
    get.handle_reply(Duration::ZERO, &node("p1"), Ok(None));
    assert_eq!(get.poll_action(), None, "one answer of the two required");
    get.handle_reply(Duration::ZERO, &node("p2"), Ok(None));
    assert!(matches!(get.poll_action(), Some(GetAction::Reply(Ok(_)))));
}

/// 3.5: a minter that stays silent may have applied the write; asking the next node to mint
/// would leave two versions of one put (the simulation found this with seeds 0 `delay,slow`, 4
/// `delay,duplicate`, 0 `delay,partition` and 263 `delay,crash`).
#[test]
fn a_silent_minter_is_never_replaced_and_the_retry_goes_back_to_it() {
    let prefs =
        PreferenceList::from_parts(Token(0), alloc::vec![node("p0"), node("p1"), node("p2")], alloc::vec![node("f0")]);
    let write = Write::put(b"v".to_vec(), CausalContext::empty(), 1).with_id(crate::version::WriteId(9));
    let mut put = PutCoordinator::new(&prefs, &StoreConfig::quorum(), &[], write.clone(), TIMEOUT, Duration::ZERO);
    let Some(PutAction::Send { to, .. }) = put.poll_action() else { panic!("expected a mint") };
    assert_eq!(to, node("p0"));
    put.handle_timeout(TIMEOUT);
    let Some(PutAction::Reply(Err(e))) = put.poll_action() else { panic!("expected the put to end undecided") };
    assert_eq!(e, PutError::Indeterminate { minter: node("p0") });
    assert!(e.is_retryable());
    assert_eq!(put.poll_action(), None, "no second mint");
    assert!(put.is_finished());

    // The same answer as a lost connection.
    let mut put = PutCoordinator::new(&prefs, &StoreConfig::quorum(), &[], write.clone(), TIMEOUT, Duration::ZERO);
    put.poll_action();
    put.handle_reply(Duration::ZERO, &node("p0"), Err(ReplicaFailure::NoAnswer));
    assert!(matches!(put.poll_action(), Some(PutAction::Reply(Err(PutError::Indeterminate { .. })))));

    // The retry asks p0 only; p0 had applied it and answers with its state, which is replicated.
    let mut retry =
        PutCoordinator::retry(&prefs, &StoreConfig::quorum(), &[], write.clone(), node("p0"), TIMEOUT, Duration::ZERO);
    let Some(PutAction::Send { to, request: PutRequest::Mint { write: sent, .. } }) = retry.poll_action() else {
        panic!("expected a mint")
    };
    assert_eq!((to.clone(), sent.id), (node("p0"), write.id));
    let mut state = Siblings::new();
    state.apply(&to, &write, ConflictPolicy::Siblings).unwrap();
    let again = state.clone();
    state.apply(&to, &write, ConflictPolicy::Siblings).unwrap();
    assert_eq!(state, again, "the minter recognises the write by its id");
    retry.handle_reply(Duration::ZERO, &to, Ok(Some(SealedState::unsealed(state))));
    assert!(matches!(retry.poll_action(), Some(PutAction::Send { request: PutRequest::Replicate { .. }, .. })));

    // A pinned minter that is unreachable is not replaced either.
    let mut retry =
        PutCoordinator::retry(&prefs, &StoreConfig::quorum(), &[], write, node("p1"), TIMEOUT, Duration::ZERO);
    retry.poll_action();
    retry.handle_reply(Duration::ZERO, &node("p1"), Err(ReplicaFailure::Unavailable));
    let Some(PutAction::Reply(Err(e))) = retry.poll_action() else { panic!("expected a failure") };
    assert!(matches!(e, PutError::Unavailable { acknowledged: 0, minter: None, .. }), "{e:?}");
    assert_eq!(retry.poll_action(), None);
}

/// 3.10 and 3.5: the smart client hands a put to one replica (the value crosses its link once),
/// moves on only when that replica certainly did not apply it, and pins the retry to it.
#[test]
fn a_forwarded_put_goes_to_one_replica_at_a_time() {
    let prefs =
        PreferenceList::from_parts(Token(0), alloc::vec![node("p0"), node("p1"), node("p2")], alloc::vec![node("f0")]);
    let write = Write::put(b"v".to_vec(), CausalContext::empty(), 1).with_id(crate::version::WriteId(5));
    let mut state = Siblings::new();
    state.apply(&node("p1"), &write, ConflictPolicy::Siblings).unwrap();
    let state = SealedState::unsealed(state);

    // p0 cannot be reached, p1 applies and replicates it.
    let mut put = ForwardPut::new(&prefs, &StoreConfig::quorum(), &[], write.clone(), None);
    assert_eq!(put.poll_action(), Some(ForwardAction::Send { to: node("p0"), request: put.write().clone() }));
    assert_eq!(put.poll_action(), None, "one replica at a time");
    put.handle_reply(Duration::ZERO, &node("p0"), Err(ReplicaFailure::Unavailable));
    assert_eq!(put.poll_action(), Some(ForwardAction::Send { to: node("p1"), request: put.write().clone() }));
    put.handle_reply(Duration::ZERO, &node("p1"), handed_answer(Response::State(Some(state.clone()))));
    assert_eq!(put.poll_action(), Some(ForwardAction::Reply(Ok(state))));
    assert!(put.is_finished());

    // p0 refuses (it does not know the store yet): one failed replica; p1's answer is lost: the
    // put is undecided, naming p1, and nobody else is asked.
    let mut put = ForwardPut::new(&prefs, &StoreConfig::quorum(), &[], write.clone(), None);
    put.poll_action();
    let unknown = ErrorReply::new(ErrorKind::UnknownStore, "store default does not exist");
    put.handle_reply(Duration::ZERO, &node("p0"), handed_answer(Response::Error(unknown)));
    assert_eq!(put.poll_action(), Some(ForwardAction::Send { to: node("p1"), request: put.write().clone() }));
    put.handle_reply(Duration::ZERO, &node("p1"), Err(ReplicaFailure::NoAnswer));
    let Some(ForwardAction::Reply(Err(e))) = put.poll_action() else { panic!("expected a failure") };
    assert_eq!(e.minter(), Some(&node("p1")));
    assert!(e.is_retryable());

    // The retry asks p1 only; a replica's own report that the write is undecided names its minter.
    let mut retry = ForwardPut::new(&prefs, &StoreConfig::quorum(), &[], write, Some(node("p1")));
    assert_eq!(retry.poll_action(), Some(ForwardAction::Send { to: node("p1"), request: retry.write().clone() }));
    let undecided = ErrorReply::new(ErrorKind::Indeterminate, "no answer").with_minter(Some(node("p1")));
    retry.handle_reply(Duration::ZERO, &node("p1"), handed_answer(Response::Error(undecided)));
    assert_eq!(retry.poll_action(), Some(ForwardAction::Reply(Err(PutError::Indeterminate { minter: node("p1") }))));
}

/// Regression (issue 8, found by the simulation with `delay,large,sloppy`, seeds 0, 1 and 2 and
/// most others): a primary that refused a sloppy write (its state would grow too large) was
/// replaced by a fallback, which took the write: it was acknowledged where no read of the
/// primaries found it, and lost. A refusing primary was reached; no fallback stands in for it.
#[test]
fn no_fallback_stands_in_for_a_primary_that_refused() {
    let too_large = || Refusal::new(ErrorKind::TooLarge, "the key would hold too many bytes");
    let prefs =
        PreferenceList::from_parts(Token(0), alloc::vec![node("p0"), node("p1"), node("p2")], alloc::vec![node("f0")]);
    let write = Write::put(b"v".to_vec(), CausalContext::empty(), 1);
    let sloppy = StoreConfig::quorum();
    // p0 mints; p1 and p2 refuse the replicate: f0 is never asked, and the put fails.
    let mut put = PutCoordinator::new(&prefs, &sloppy, &[], write.clone(), TIMEOUT, Duration::ZERO);
    let Some(PutAction::Send { to, .. }) = put.poll_action() else { panic!("expected a mint") };
    assert_eq!(to, node("p0"));
    let mut state = Siblings::new();
    state.apply(&to, &write, ConflictPolicy::Siblings).unwrap();
    put.handle_reply(Duration::ZERO, &to, Ok(Some(SealedState::unsealed(state))));
    let mut asked = Vec::new();
    while let Some(PutAction::Send { to, .. }) = put.poll_action() {
        asked.push(to);
    }
    assert_eq!(asked, alloc::vec![node("p1"), node("p2")]);
    for p in ["p1", "p2"] {
        put.handle_reply(Duration::ZERO, &node(p), Err(ReplicaFailure::Refused(too_large())));
    }
    let mut replied = None;
    while let Some(action) = put.poll_action() {
        match action {
            PutAction::Send { to, .. } => panic!("{to} was asked to stand in for a primary that refused"),
            PutAction::Reply(outcome) => replied = Some(outcome),
            PutAction::Repair { .. } | PutAction::Hint { .. } => {}
        }
    }
    assert!(matches!(replied, Some(Err(_))), "{replied:?}");
    // Every primary refuses the mint: no fallback mints it either.
    let mut put = PutCoordinator::new(&prefs, &sloppy, &[], write, TIMEOUT, Duration::ZERO);
    while let Some(action) = put.poll_action() {
        match action {
            PutAction::Send { to, .. } => {
                assert_ne!(to, node("f0"), "a fallback was asked to mint what every primary refused");
                put.handle_reply(Duration::ZERO, &to, Err(ReplicaFailure::Refused(too_large())));
            }
            PutAction::Reply(outcome) => assert!(outcome.is_err()),
            PutAction::Repair { .. } | PutAction::Hint { .. } => {}
        }
    }
}

/// Regression (issue 8; `a_killed_node_is_shown_down_and_requests_skip_it` failed once under
/// load with a get answered by 0 replicas): a caller's detector held every replica down while
/// they were up, and requests skipped them all and failed at once. Nodes held down are a
/// preference, asked last: only when the quorum cannot be met without them.
#[test]
fn a_get_asks_replicas_held_down_only_when_r_cannot_be_met_without_them() {
    let prefs = PreferenceList::from_parts(Token(0), alloc::vec![node("p0"), node("p1"), node("p2")], Vec::new());
    let sends = |get: &mut GetCoordinator| {
        let mut sent = Vec::new();
        while let Some(GetAction::Send { to, .. }) = get.poll_action() {
            sent.push(to);
        }
        sent
    };
    // One held down: R=2 can be met by the other two, which alone are asked.
    let mut get = GetCoordinator::new(&prefs, &StoreConfig::strict(), &[node("p2")], TIMEOUT, Duration::ZERO);
    assert_eq!(sends(&mut get), [node("p0"), node("p1")]);
    // It is asked once one of them fails.
    get.handle_reply(Duration::ZERO, &node("p1"), Err(ReplicaFailure::Unavailable));
    assert_eq!(sends(&mut get), [node("p2")]);
    get.handle_reply(Duration::ZERO, &node("p0"), Ok(None));
    get.handle_reply(Duration::ZERO, &node("p2"), Ok(None));
    assert!(matches!(get.poll_action(), Some(GetAction::Reply(Ok(_)))));

    // Every replica held down: all are asked at once rather than none, and the read succeeds.
    let all = [node("p0"), node("p1"), node("p2")];
    let mut get = GetCoordinator::new(&prefs, &StoreConfig::strict(), &all, TIMEOUT, Duration::ZERO);
    assert_eq!(sends(&mut get), all);
    get.handle_reply(Duration::ZERO, &node("p1"), Ok(None));
    get.handle_reply(Duration::ZERO, &node("p2"), Ok(None));
    assert!(matches!(get.poll_action(), Some(GetAction::Reply(Ok(_)))));

    // A sloppy store: a fallback held up stands in for a primary held down from the start.
    let prefs =
        PreferenceList::from_parts(Token(0), alloc::vec![node("p0"), node("p1"), node("p2")], alloc::vec![node("f0")]);
    let mut get = GetCoordinator::new(&prefs, &StoreConfig::quorum(), &[node("p0")], TIMEOUT, Duration::ZERO);
    assert_eq!(sends(&mut get), [node("f0"), node("p1"), node("p2")]);
}

#[test]
fn a_put_asks_a_primary_held_down_only_when_w_cannot_be_met_without_it() {
    let prefs = PreferenceList::from_parts(Token(0), alloc::vec![node("p0"), node("p1"), node("p2")], Vec::new());
    let write = Write::put(b"v".to_vec(), CausalContext::empty(), 1);
    let minted = |at: &str| {
        let mut state = Siblings::new();
        state.apply(&node(at), &write, ConflictPolicy::Siblings).unwrap();
        SealedState::unsealed(state)
    };
    let actions = |put: &mut PutCoordinator| core::iter::from_fn(|| put.poll_action()).collect::<Vec<_>>();
    let hint_for = |sent: &[PutAction], minter: &str, primary: &str| {
        sent.iter()
            .any(|a| matches!(a, PutAction::Hint { to, primary: p, .. } if *to == node(minter) && *p == node(primary)))
    };

    // p0 held down: p1 mints, p2 gets the state, and the minter keeps a hint for p0.
    let mut put =
        PutCoordinator::new(&prefs, &StoreConfig::strict(), &[node("p0")], write.clone(), TIMEOUT, Duration::ZERO);
    let Some(PutAction::Send { to, request: PutRequest::Mint { .. } }) = put.poll_action() else { panic!() };
    assert_eq!(to, node("p1"));
    put.handle_reply(Duration::ZERO, &to, Ok(Some(minted("p1"))));
    let sent = actions(&mut put);
    assert!(matches!(&sent[0], PutAction::Send { to, .. } if *to == node("p2")), "{sent:?}");
    assert!(hint_for(&sent, "p1", "p0") && sent.len() == 2, "{sent:?}");
    put.handle_reply(Duration::ZERO, &node("p2"), Ok(None));
    let done = actions(&mut put);
    assert!(done.iter().any(|a| matches!(a, PutAction::Reply(Ok(_)))), "{done:?}");

    // Every primary held down: the first mints, the second gets the state (W=2 needs it), and
    // the third only a hint at the minter.
    let all = [node("p0"), node("p1"), node("p2")];
    let mut put = PutCoordinator::new(&prefs, &StoreConfig::strict(), &all, write.clone(), TIMEOUT, Duration::ZERO);
    let Some(PutAction::Send { to, request: PutRequest::Mint { .. } }) = put.poll_action() else { panic!() };
    assert_eq!(to, node("p0"));
    put.handle_reply(Duration::ZERO, &to, Ok(Some(minted("p0"))));
    let sent = actions(&mut put);
    assert!(matches!(&sent[0], PutAction::Send { to, .. } if *to == node("p1")), "{sent:?}");
    assert!(hint_for(&sent, "p0", "p2") && sent.len() == 2, "{sent:?}");
    // p1 fails: p2, held down, is asked as the last resort.
    put.handle_reply(Duration::ZERO, &node("p1"), Err(ReplicaFailure::Unavailable));
    let sent = actions(&mut put);
    assert!(sent.iter().any(|a| matches!(a, PutAction::Send { to, .. } if *to == node("p2"))), "{sent:?}");
    put.handle_reply(Duration::ZERO, &node("p2"), Ok(None));
    let done = actions(&mut put);
    assert!(done.iter().any(|a| matches!(a, PutAction::Reply(Ok(_)))), "{done:?}");

    // The smart client's forwarded put tries the nodes held up first.
    let mut put = ForwardPut::new(&prefs, &StoreConfig::strict(), &[node("p0")], write, None);
    assert!(matches!(put.poll_action(), Some(ForwardAction::Send { to, .. }) if to == node("p1")));
    put.handle_reply(Duration::ZERO, &node("p1"), Err(ReplicaFailure::Unavailable));
    assert!(matches!(put.poll_action(), Some(ForwardAction::Send { to, .. }) if to == node("p2")));
    put.handle_reply(Duration::ZERO, &node("p2"), Err(ReplicaFailure::Unavailable));
    assert!(matches!(put.poll_action(), Some(ForwardAction::Send { to, .. }) if to == node("p0")));
}

/// Issue 9, 2.1 (regression): during a ring change a put counts W in both rings' replica sets.
/// Once two failed mints left one set unable to reach its W, the next primary was still asked to
/// mint, and the put failed at once naming no minter while that mint was in flight: a retry then
/// had another replica mint the same write, leaving two versions of one put (the simulation
/// with `elastic`, seed 1212). The mint that cannot lead to a joint quorum is not sent.
#[test]
fn a_put_whose_joint_quorum_is_out_of_reach_sends_no_mint_it_cannot_use() {
    let primaries = alloc::vec![node("n0"), node("n4"), node("n2"), node("n5")];
    let prefs = PreferenceList::from_parts(Token(0), primaries, Vec::new());
    let joint = JointQuorum {
        sets: [
            (alloc::vec![node("n0"), node("n4"), node("n2")], 2),
            (alloc::vec![node("n0"), node("n4"), node("n5")], 2),
        ],
    };
    let write = Write::put(b"v".to_vec(), CausalContext::empty(), 1).with_id(crate::version::WriteId(7));
    let config = StoreConfig::strict().for_transition(4);
    let mut put = PutCoordinator::new(&prefs, &config, &[], write, TIMEOUT, Duration::ZERO).with_joint_quorum(joint);
    for n in ["n0", "n4"] {
        let Some(PutAction::Send { to, request: PutRequest::Mint { .. } }) = put.poll_action() else {
            panic!("expected a mint at {n}")
        };
        assert_eq!(to, node(n));
        put.handle_reply(Duration::ZERO, &to, Err(ReplicaFailure::Unavailable));
    }
    // {n0, n4, n2} can hold at most one acknowledgement now: n2 is not asked to mint.
    let actions: Vec<PutAction> = core::iter::from_fn(|| put.poll_action()).collect();
    assert!(!actions.iter().any(|a| matches!(a, PutAction::Send { .. })), "{actions:?}");
    let [PutAction::Reply(Err(e))] = actions.as_slice() else { panic!("{actions:?}") };
    assert_eq!(e.minter(), None, "nobody applied the write");
    assert!(put.is_finished());
}
