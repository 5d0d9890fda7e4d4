use alloc::string::ToString;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::identity::NodeId;
use crate::store::ConflictPolicy;

/// The context a caller who read `state` gets (sealed as a node would, for key `k`).
fn seen(state: &Siblings) -> CausalContext {
    let store = crate::store::StoreName::new("default").unwrap();
    ContextKey::new([3; ContextKey::LEN]).seal(&store, b"k", state.clone()).context()
}

fn actor(i: usize) -> NodeId {
    NodeId::new(["a", "b", "c"][i % 3]).unwrap()
}

/// One step of a simulated history over three replicas.
#[derive(Clone, Debug)]
enum Step {
    /// Write at replica `at` with the context read from replica `read` (or blind).
    Put { at: usize, read: Option<usize>, delete: bool, clock: u64 },
    /// Merge replica `from`'s state into replica `to`.
    Sync { from: usize, to: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0usize..3, proptest::option::of(0usize..3), proptest::bool::weighted(0.2), 0u64..50)
            .prop_map(|(at, read, delete, clock)| Step::Put { at, read, delete, clock }),
        (0usize..3, 0usize..3).prop_map(|(from, to)| Step::Sync { from, to }),
    ]
}

/// A context part over two actors with small counters, timestamps and seals (so that parts
/// often cover each other or tie).
fn context_part() -> impl Strategy<Value = ContextPart> {
    (0u64..3, 0u64..3, 0u64..3, 0u8..3).prop_map(|(a, b, latest, seal)| {
        let mut history = VersionVector::new();
        for (i, counter) in [(0, a), (1, b)] {
            if counter > 0 {
                history.add(&Dot { actor: actor(i), counter });
            }
        }
        ContextPart::new(history, latest, Seal([seal; 16]))
    })
}

/// A written version and the context it was written with.
struct Written {
    dot: Dot,
    context: VersionVector,
}

/// Runs a history; returns every state any replica passed through and every write made.
fn run(steps: &[Step], policy: ConflictPolicy) -> (Vec<Siblings>, Vec<Written>) {
    let mut replicas = [Siblings::new(), Siblings::new(), Siblings::new()];
    let mut states = alloc::vec![Siblings::new()];
    let mut writes = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        match *s {
            Step::Put { at, read, delete, clock } => {
                let context = read.map(|r| seen(&replicas[r])).unwrap_or_default();
                let write = if delete {
                    Write::delete(context.clone(), clock)
                } else {
                    Write::put(i.to_string().into_bytes(), context.clone(), clock)
                };
                let dot = replicas[at].apply(&actor(at), &write, policy).unwrap();
                writes.push(Written { dot, context: context.vector().clone() });
                states.push(replicas[at].clone());
            }
            Step::Sync { from, to } => {
                let source = replicas[from].clone();
                replicas[to].merge(&source, policy);
                states.push(replicas[to].clone());
            }
        }
    }
    (states, writes)
}

fn merged(a: &Siblings, b: &Siblings, policy: ConflictPolicy) -> Siblings {
    let mut m = a.clone();
    m.merge(b, policy);
    m
}

fn pick<'a>(states: &'a [Siblings], i: &prop::sample::Index) -> &'a Siblings {
    &states[i.index(states.len())]
}

fn check_laws(policy: ConflictPolicy, steps: &[Step], picks: &[prop::sample::Index; 3]) -> Result<(), TestCaseError> {
    let (states, _) = run(steps, policy);
    let (a, b, c) = (pick(&states, &picks[0]), pick(&states, &picks[1]), pick(&states, &picks[2]));
    for s in [a, b, c] {
        prop_assert_eq!(s.validate(), Ok(()));
    }
    prop_assert_eq!(merged(a, b, policy), merged(b, a, policy), "commutative");
    prop_assert_eq!(merged(&merged(a, b, policy), c, policy), merged(a, &merged(b, c, policy), policy), "associative");
    prop_assert_eq!(merged(a, a, policy), a.clone(), "idempotent");
    prop_assert_eq!(merged(&merged(a, b, policy), b, policy), merged(a, b, policy), "absorbs");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn merge_laws_hold_for_siblings(steps in proptest::collection::vec(step(), 0..40),
                                    picks in any::<[prop::sample::Index; 3]>()) {
        check_laws(ConflictPolicy::Siblings, &steps, &picks)?;
    }

    #[test]
    fn merge_laws_hold_for_lww(steps in proptest::collection::vec(step(), 0..40),
                               picks in any::<[prop::sample::Index; 3]>()) {
        check_laws(ConflictPolicy::Lww, &steps, &picks)?;
    }

    /// A state holds exactly the writes it knows of that no write it knows of superseded.
    #[test]
    fn reconciliation_keeps_every_concurrent_version_and_only_those(
        steps in proptest::collection::vec(step(), 0..60),
    ) {
        let (states, writes) = run(&steps, ConflictPolicy::Siblings);
        for state in &states {
            let known: Vec<&Written> = writes.iter().filter(|w| state.history().covers(&w.dot)).collect();
            let mut expected: Vec<Dot> = known
                .iter()
                .filter(|w| !known.iter().any(|o| o.context.covers(&w.dot)))
                .map(|w| w.dot.clone())
                .collect();
            expected.sort();
            let held: Vec<Dot> = state.versions().iter().map(|v| v.dot.clone()).collect();
            prop_assert_eq!(held, expected);
        }
    }

    #[test]
    fn lww_keeps_one_version(steps in proptest::collection::vec(step(), 1..40)) {
        let (states, _) = run(&steps, ConflictPolicy::Lww);
        for s in &states {
            prop_assert!(s.versions().len() <= 1);
        }
    }

    #[test]
    fn vector_compare_agrees_with_merge(steps in proptest::collection::vec(step(), 0..30),
                                        picks in any::<[prop::sample::Index; 2]>()) {
        let (states, _) = run(&steps, ConflictPolicy::Siblings);
        let (a, b) = (pick(&states, &picks[0]).history(), pick(&states, &picks[1]).history());
        let mut joined = a.clone();
        joined.merge(b);
        let expected = match (joined == *b, joined == *a) {
            (true, true) => Causality::Equal,
            (true, false) => Causality::Before,
            (false, true) => Causality::After,
            (false, false) => Causality::Concurrent,
        };
        prop_assert_eq!(a.compare(b), expected);
    }

    #[test]
    fn context_text_round_trips(steps in proptest::collection::vec(step(), 0..20),
                                pick_i in any::<prop::sample::Index>()) {
        let (states, _) = run(&steps, ConflictPolicy::Siblings);
        let context = seen(pick(&states, &pick_i));
        let text = context.to_string();
        prop_assert_eq!(text.parse::<CausalContext>(), Ok(context.clone()));
        prop_assert_eq!(CausalContext::from_bytes(&context.to_bytes()), Ok(context));
    }

    /// Context merge is commutative, associative and idempotent, keeps the token well formed,
    /// and sees what both sides saw.
    #[test]
    fn merge_laws_hold_for_contexts(parts in proptest::collection::vec(context_part(), 0..9),
                                    cuts in any::<[prop::sample::Index; 2]>()) {
        let mut cut = [cuts[0].index(parts.len() + 1), cuts[1].index(parts.len() + 1)];
        cut.sort_unstable();
        let (x, y, z) = (
            CausalContext::from_parts(parts[..cut[0]].to_vec()),
            CausalContext::from_parts(parts[cut[0]..cut[1]].to_vec()),
            CausalContext::from_parts(parts[cut[1]..].to_vec()),
        );
        let join = |a: &CausalContext, b: &CausalContext| {
            let mut m = a.clone();
            m.merge(b);
            m
        };
        prop_assert_eq!(join(&x, &y), join(&y, &x));
        prop_assert_eq!(join(&join(&x, &y), &z), join(&x, &join(&y, &z)));
        prop_assert_eq!(join(&x, &x), x.clone());
        let all = join(&join(&x, &y), &z);
        prop_assert!(all.is_well_formed() || all.parts().len() > MAX_CONTEXT_PARTS);
        let mut seen_all = x.vector();
        seen_all.merge(&y.vector());
        seen_all.merge(&z.vector());
        prop_assert_eq!(all.vector(), seen_all);
        prop_assert_eq!(all.latest(), x.latest().max(y.latest()).max(z.latest()));
    }

    #[test]
    fn context_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), text in ".{0,64}") {
        let _ = CausalContext::from_bytes(&bytes);
        let _ = text.parse::<CausalContext>();
    }
}

#[test]
fn two_blind_puts_are_siblings_and_a_put_with_their_context_replaces_both() {
    let (a, b) = (actor(0), actor(1));
    let mut ra = Siblings::new();
    let mut rb = Siblings::new();
    ra.apply(&a, &Write::put(b"x".to_vec(), CausalContext::empty(), 1), ConflictPolicy::Siblings).unwrap();
    rb.apply(&b, &Write::put(b"y".to_vec(), CausalContext::empty(), 2), ConflictPolicy::Siblings).unwrap();
    ra.merge(&rb, ConflictPolicy::Siblings);
    assert_eq!(ra.values().count(), 2);
    let ctx = seen(&ra);
    ra.apply(&a, &Write::put(b"z".to_vec(), ctx, 3), ConflictPolicy::Siblings).unwrap();
    assert_eq!(ra.values().map(|v| v.as_ref().to_vec()).collect::<Vec<_>>(), [b"z".to_vec()]);
    // The stale replica learns the outcome by merging.
    rb.merge(&ra, ConflictPolicy::Siblings);
    assert_eq!(rb, ra);
}

#[test]
fn delete_leaves_a_tombstone_that_reads_as_absent() {
    let a = actor(0);
    let mut s = Siblings::new();
    s.apply(&a, &Write::put(b"x".to_vec(), CausalContext::empty(), 1), ConflictPolicy::Siblings).unwrap();
    s.apply(&a, &Write::delete(seen(&s), 2), ConflictPolicy::Siblings).unwrap();
    assert!(s.is_absent());
    assert_eq!(s.versions().len(), 1);
    assert_eq!(s.versions()[0].payload, Payload::Tombstone);
}

#[test]
fn lww_prefers_the_later_clock_but_a_causal_successor_always_wins() {
    let (a, b) = (actor(0), actor(1));
    let lww = ConflictPolicy::Lww;
    let mut ra = Siblings::new();
    let mut rb = Siblings::new();
    ra.apply(&a, &Write::put(b"late".to_vec(), CausalContext::empty(), 200), lww).unwrap();
    rb.apply(&b, &Write::put(b"early".to_vec(), CausalContext::empty(), 100), lww).unwrap();
    ra.merge(&rb, lww);
    assert_eq!(ra.values().next().unwrap().as_ref(), b"late");
    // A write that read "late" wins even with a clock behind it.
    ra.apply(&b, &Write::put(b"next".to_vec(), seen(&ra), 50), lww).unwrap();
    assert_eq!(ra.values().next().unwrap().as_ref(), b"next");
}

#[test]
fn siblings_are_bounded_by_concurrent_writers_not_writes() {
    // Three clients each read the merged state and write back, 3,000 writes in all, with replicas
    // syncing only now and then: a key never holds more than three siblings.
    let policy = ConflictPolicy::Siblings;
    let mut replicas = [Siblings::new(), Siblings::new(), Siblings::new()];
    let mut contexts = [CausalContext::empty(), CausalContext::empty(), CausalContext::empty()];
    let mut rng = 0x1234_5678_u64;
    let mut next = || {
        rng = crate::mix::mix64(rng);
        rng
    };
    for i in 0..3_000u64 {
        let client = (next() % 3) as usize;
        let replica = (next() % 3) as usize;
        let write = Write::put(i.to_le_bytes().to_vec(), contexts[client].clone(), i);
        replicas[replica].apply(&actor(replica), &write, policy).unwrap();
        if next() % 4 == 0 {
            let (from, to) = ((next() % 3) as usize, (next() % 3) as usize);
            let source = replicas[from].clone();
            replicas[to].merge(&source, policy);
        }
        // The client reads a full quorum before its next write.
        let mut read = Siblings::new();
        for r in &replicas {
            read.merge(r, policy);
        }
        assert!(read.versions().len() <= 3, "{} siblings after {i} writes", read.versions().len());
        assert!(read.history().len() <= 3);
        contexts[client] = seen(&read);
    }
}

#[test]
fn a_tombstone_is_a_state_of_tombstones_only() {
    let a = actor(0);
    let mut s = Siblings::new();
    assert!(!s.is_tombstone(), "a key never written is not a deleted key");
    s.apply(&a, &Write::put(b"x".to_vec(), CausalContext::empty(), 1), ConflictPolicy::Siblings).unwrap();
    assert!(!s.is_tombstone());
    s.apply(&a, &Write::delete(CausalContext::empty(), 2), ConflictPolicy::Siblings).unwrap();
    assert!(!s.is_tombstone(), "a delete that did not see the value leaves it a sibling");
    s.apply(&a, &Write::delete(seen(&s), 3), ConflictPolicy::Siblings).unwrap();
    assert!(s.is_tombstone());
}

#[test]
fn a_key_minted_again_after_its_record_was_removed_gets_a_dot_above_the_floor() {
    let a = actor(0);
    // The key's first life: three writes by `a`, then a delete that saw them; the record is
    // collected, and a client still holds the tombstone's context.
    let mut first = Siblings::new();
    for t in 1..=3 {
        first.apply(&a, &Write::put(b"x".to_vec(), seen(&first), t), ConflictPolicy::Siblings).unwrap();
    }
    first.apply(&a, &Write::delete(seen(&first), 4), ConflictPolicy::Siblings).unwrap();
    let floor = first.history().counter(&a);
    let old_context = seen(&first);
    // Minted afresh without the floor, the dot would be (a, 1): a dot the old context covers,
    // so the new write would be taken as already seen and dropped by a merge.
    let mut again = Siblings::new();
    let dot =
        again.apply_above(&a, &Write::put(b"y".to_vec(), CausalContext::empty(), 5), ConflictPolicy::Siblings, floor);
    let dot = dot.unwrap();
    assert_eq!(dot.counter, floor + 1);
    assert!(!first.history().covers(&dot));
    // The old context is taken (it claims no more than the floor), and supersedes nothing new.
    let mut after = Siblings::new();
    after.apply_above(&a, &Write::put(b"z".to_vec(), old_context, 6), ConflictPolicy::Siblings, floor).unwrap();
    assert_eq!(after.versions()[0].dot.counter, floor + 1);
    let mut merged = again.clone();
    merged.merge(&first, ConflictPolicy::Siblings);
    assert_eq!(merged.values().count(), 1, "the new write survives a merge with the collected history");
}

#[test]
fn a_context_from_the_future_is_refused_and_changes_nothing() {
    let a = actor(0);
    let mut forged = VersionVector::new();
    forged.add(&Dot { actor: a.clone(), counter: 7 });
    let mut s = Siblings::new();
    s.apply(&a, &Write::put(b"x".to_vec(), CausalContext::empty(), 1), ConflictPolicy::Siblings).unwrap();
    let before = s.clone();
    let forged = CausalContext::from_parts([ContextPart::new(forged, 0, Seal::NONE)]);
    let err = s.apply(&a, &Write::put(b"y".to_vec(), forged, 2), ConflictPolicy::Siblings);
    assert!(matches!(err, Err(ApplyError::ContextFromTheFuture { claimed: 7, known: 1, .. })));
    assert_eq!(s, before);
}

#[test]
fn bad_context_tokens_get_clear_errors() {
    assert_eq!("".parse::<CausalContext>(), Err(ContextError::Empty));
    assert_eq!("!!".parse::<CausalContext>(), Err(ContextError::NotBase64));
    assert_eq!(CausalContext::from_bytes(&[9, 0]), Err(ContextError::UnsupportedFormat(9)));
    assert_eq!(CausalContext::from_bytes(&[2, 5]), Err(ContextError::Malformed));
    assert_eq!(CausalContext::from_bytes(&[2, 0, 0]), Err(ContextError::Malformed));
    // A format-1 token (an unsealed vector, {"a": 3}) made by an earlier build: refused with a
    // message that says to read the key again.
    let v1 = [1u8, 1, 1, b'a', 3];
    let e = CausalContext::from_bytes(&v1).unwrap_err();
    assert_eq!(e, ContextError::UnsupportedFormat(1));
    assert!(e.to_string().contains("read the key again"), "{e}");
    // A part with an empty history, parts out of order, a part another covers: malformed.
    let part = |counter: u64, latest: u64, seal: u8| {
        let mut history = VersionVector::new();
        history.add(&Dot { actor: actor(0), counter });
        ContextPart::new(history, latest, Seal([seal; 16]))
    };
    let encode = |parts: &[ContextPart]| {
        let mut bytes = alloc::vec![CONTEXT_FORMAT];
        bytes.extend(postcard::to_allocvec(parts).unwrap());
        bytes
    };
    let empty = ContextPart::new(VersionVector::new(), 0, Seal([1; 16]));
    assert_eq!(CausalContext::from_bytes(&encode(&[empty])), Err(ContextError::Malformed));
    assert_eq!(CausalContext::from_bytes(&encode(&[part(1, 0, 2), part(2, 5, 1)])), Err(ContextError::Malformed));
    assert_eq!(CausalContext::from_bytes(&encode(&[part(1, 0, 1), part(2, 5, 2)])), Err(ContextError::Malformed));
    let many: Vec<ContextPart> = (0..=MAX_CONTEXT_PARTS as u8).map(|i| part(1, u64::from(i), i)).collect();
    assert_eq!(CausalContext::from_bytes(&encode(&many)), Err(ContextError::TooManyParts));
    // Concurrent parts, in seal order: fine, and the token round-trips.
    let mut other = VersionVector::new();
    other.add(&Dot { actor: actor(1), counter: 1 });
    let ok = encode(&[part(1, 0, 1), ContextPart::new(other, 0, Seal([2; 16]))]);
    assert_eq!(CausalContext::from_bytes(&ok).unwrap().to_bytes(), ok);
}

fn key_store() -> crate::store::StoreName {
    crate::store::StoreName::new("default").unwrap()
}

/// 3.3: a context is bound to its store and key and sealed with the cluster secret: a context of
/// another key or store, of another cluster, or altered in any way does not check.
#[test]
fn a_context_checks_only_for_its_key_in_its_cluster() {
    let secret = ContextKey::new([5; ContextKey::LEN]);
    let mut state = Siblings::new();
    state.apply(&actor(0), &Write::put(b"x".to_vec(), CausalContext::empty(), 40), ConflictPolicy::Siblings).unwrap();
    let context = secret.seal(&key_store(), b"ka", state.clone()).context();
    assert_eq!(secret.check(&key_store(), b"ka", &context), Ok(()));
    assert_eq!(secret.check(&key_store(), b"ka", &CausalContext::empty()), Ok(()), "a blind write");
    assert_eq!(secret.check(&key_store(), b"kb", &context), Err(ContextError::NotSealed));
    let other_store = crate::store::StoreName::new("other").unwrap();
    assert_eq!(secret.check(&other_store, b"ka", &context), Err(ContextError::NotSealed));
    let other_cluster = ContextKey::new([6; ContextKey::LEN]);
    assert_eq!(other_cluster.check(&key_store(), b"ka", &context), Err(ContextError::NotSealed));
    let part = &context.parts()[0];
    // A counter raised (the `{b: u64::MAX}` forgery), a timestamp changed, a seal altered.
    let mut raised = part.history().clone();
    raised.add(&Dot { actor: actor(1), counter: u64::MAX });
    for forged in [
        ContextPart::new(raised, part.latest(), part.seal()),
        ContextPart::new(part.history().clone(), part.latest() + 1, part.seal()),
        ContextPart::new(part.history().clone(), part.latest(), Seal([0; 16])),
    ] {
        let forged = CausalContext::from_parts([forged]);
        assert_eq!(secret.check(&key_store(), b"ka", &forged), Err(ContextError::NotSealed));
    }
    // A genuine context merged with a forged one does not check either (a forged part that adds
    // nothing is dropped by the merge, and then nothing is forged).
    let mut mixed = context.clone();
    mixed.merge(&CausalContext::from_parts([ContextPart::new(VersionVector::new(), 0, Seal::NONE)]));
    mixed.merge(&CausalContext::unsealed(state.history().clone()));
    assert_eq!(mixed, context, "parts that add nothing are no parts");
    let mut raised = state.history().clone();
    raised.add(&Dot { actor: actor(2), counter: 1 });
    mixed.merge(&CausalContext::unsealed(raised));
    assert_eq!(mixed.parts().len(), 2, "the forged part beside the genuine one");
    assert_eq!(secret.check(&key_store(), b"ka", &mixed), Err(ContextError::NotSealed));
    // The key does not show in its Debug form.
    assert_eq!(alloc::format!("{secret:?}"), "ContextKey(..)");
}

/// 3.7: a write is stamped later than every version its context saw, even one the minting
/// replica does not hold: a delete of a version read elsewhere beats it under last-writer-wins.
#[test]
fn a_write_is_stamped_after_everything_its_context_saw() {
    let secret = ContextKey::new([5; ContextKey::LEN]);
    let (a, b) = (actor(0), actor(1));
    let lww = ConflictPolicy::Lww;
    // v1 written at a with a clock far ahead of b's.
    let mut at_a = Siblings::new();
    at_a.apply(&a, &Write::put(b"v1".to_vec(), CausalContext::empty(), 10_000), lww).unwrap();
    let read = secret.seal(&key_store(), b"k", at_a.clone()).context();
    assert_eq!(read.latest(), 10_000);
    // b never got v1; the delete that read it is minted there with b's clock.
    let mut at_b = Siblings::new();
    at_b.apply(&b, &Write::delete(read, 5), lww).unwrap();
    assert_eq!(at_b.versions()[0].timestamp, 10_001);
    // Whichever way the replicas merge, the delete wins.
    let mut merged = at_a.clone();
    merged.merge(&at_b, lww);
    assert!(merged.is_absent());
    at_b.merge(&at_a, lww);
    assert!(at_b.is_absent());
}

/// 3.3: counter arithmetic is checked: a replica whose counter for a key is at its maximum
/// refuses to mint instead of wrapping to a dot that is already covered.
#[test]
fn a_replica_out_of_counters_refuses_to_mint() {
    let a = actor(0);
    let dot = Dot { actor: a.clone(), counter: u64::MAX };
    let mut history = VersionVector::new();
    history.add(&dot);
    let version = Sibling { dot, timestamp: 1, payload: Payload::Value(b"x".to_vec().into()), write: WriteId::NONE };
    let mut state = Siblings::from_parts(history, alloc::vec![version]).unwrap();
    let before = state.clone();
    let err = state.apply(&a, &Write::put(b"y".to_vec(), CausalContext::empty(), 2), ConflictPolicy::Siblings);
    assert!(matches!(err, Err(ApplyError::CountersExhausted { .. })), "{err:?}");
    assert_eq!(state, before);
}

/// 3.5: a write sent twice (a retry, a duplicate delivery) is one version.
#[test]
fn a_write_applied_twice_is_one_version_and_other_writes_are_not_mistaken_for_it() {
    let a = NodeId::new("a").unwrap();
    let mut state = Siblings::new();
    let first = Write::put(b"x".to_vec(), CausalContext::empty(), 1).with_id(WriteId(7));
    let dot = state.apply(&a, &first, ConflictPolicy::Siblings).unwrap();
    assert_eq!(state.apply(&a, &first, ConflictPolicy::Siblings).unwrap(), dot);
    assert_eq!(state.versions().len(), 1);
    assert_eq!(state.version_of(WriteId(7)).map(|v| v.write), Some(WriteId(7)));
    // Another write, and writes without an id, are new versions.
    state
        .apply(&a, &Write::put(b"x".to_vec(), CausalContext::empty(), 1).with_id(WriteId(8)), ConflictPolicy::Siblings)
        .unwrap();
    let unnamed = Write::put(b"x".to_vec(), CausalContext::empty(), 1);
    state.apply(&a, &unnamed, ConflictPolicy::Siblings).unwrap();
    state.apply(&a, &unnamed, ConflictPolicy::Siblings).unwrap();
    assert_eq!(state.versions().len(), 4);
    assert!(state.version_of(WriteId::NONE).is_none());
}
