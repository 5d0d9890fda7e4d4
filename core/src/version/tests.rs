use alloc::string::ToString;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::identity::NodeId;
use crate::store::ConflictPolicy;

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
                let context = read.map(|r| replicas[r].context()).unwrap_or_default();
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
        let context = pick(&states, &pick_i).context();
        let text = context.to_string();
        prop_assert_eq!(text.parse::<CausalContext>(), Ok(context.clone()));
        prop_assert_eq!(CausalContext::from_bytes(&context.to_bytes()), Ok(context));
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
    let ctx = ra.context();
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
    s.apply(&a, &Write::delete(s.context(), 2), ConflictPolicy::Siblings).unwrap();
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
    ra.apply(&b, &Write::put(b"next".to_vec(), ra.context(), 50), lww).unwrap();
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
        contexts[client] = read.context();
    }
}

#[test]
fn a_context_from_the_future_is_refused_and_changes_nothing() {
    let a = actor(0);
    let mut forged = VersionVector::new();
    forged.add(&Dot { actor: a.clone(), counter: 7 });
    let mut s = Siblings::new();
    s.apply(&a, &Write::put(b"x".to_vec(), CausalContext::empty(), 1), ConflictPolicy::Siblings).unwrap();
    let before = s.clone();
    let err = s.apply(&a, &Write::put(b"y".to_vec(), CausalContext::from_vector(forged), 2), ConflictPolicy::Siblings);
    assert!(matches!(err, Err(ApplyError::ContextFromTheFuture { claimed: 7, known: 1, .. })));
    assert_eq!(s, before);
}

#[test]
fn bad_context_tokens_get_clear_errors() {
    assert_eq!("".parse::<CausalContext>(), Err(ContextError::Empty));
    assert_eq!("!!".parse::<CausalContext>(), Err(ContextError::NotBase64));
    assert_eq!(CausalContext::from_bytes(&[9, 0]), Err(ContextError::UnsupportedFormat(9)));
    assert_eq!(CausalContext::from_bytes(&[1, 5]), Err(ContextError::Malformed));
    assert_eq!(CausalContext::from_bytes(&[1, 0, 0]), Err(ContextError::Malformed));
    // A format-1 token made by an earlier build still reads: {"a": 3}.
    let v1 = [1u8, 1, 1, b'a', 3];
    let ctx = CausalContext::from_bytes(&v1).unwrap();
    assert_eq!(ctx.vector().counter(&actor(0)), 3);
    assert_eq!(ctx.to_bytes(), v1);
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
