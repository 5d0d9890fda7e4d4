//! The simulation's own guarantees: it replays exactly, it passes with the faults the node
//! survives, and its checkers bite on the holes still open.

use quickv_sim::{Fault, Mechanism, Options, run};

fn with(seed: u64, faults: &[Fault]) -> Options {
    let mut options = Options::new(seed);
    options.faults = faults.iter().copied().collect();
    options
}

/// Teeth: the first seed below `seeds` whose run of `faults` with `mechanism` switched off
/// reports a violation saying `what`; the same seed with the mechanism on must be clean. (A
/// search rather than one seed: any change to the node machine moves every run's schedule.)
fn teeth(faults: &[Fault], mechanism: Mechanism, what: &str, seeds: u64) -> u64 {
    teeth_in(faults, mechanism, what, 0..seeds)
}

/// [`teeth`] over the seeds of `range` (for holes so rare that a search from 0 would take long).
fn teeth_in(faults: &[Fault], mechanism: Mechanism, what: &str, range: std::ops::Range<u64>) -> u64 {
    let seeds = range.end;
    for seed in range {
        let mut options = with(seed, faults);
        options.disabled.insert(mechanism);
        if run(&options).violations.iter().any(|v| v.contains(what)) {
            options.disabled.clear();
            let on = run(&options);
            assert!(on.violations.is_empty(), "seed {seed} with {mechanism:?}: {:?}", on.violations);
            return seed;
        }
    }
    panic!("no seed below {seeds} of {faults:?} shows {what:?} with {mechanism:?} switched off")
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let mut options = with(11, &[Fault::Delay, Fault::Drop, Fault::Crash, Fault::Partition]);
    options.trace = true;
    let (a, b) = (run(&options), run(&options));
    assert!(a.trace.len() > 100, "a trace of {} lines", a.trace.len());
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.violations, b.violations);
    options.seed = 12;
    assert_ne!(run(&options).trace, a.trace, "another seed, another run");
}

#[test]
fn default_faults_leave_no_violation() {
    for seed in 0..20 {
        let outcome = run(&Options::new(seed));
        assert!(outcome.violations.is_empty(), "seed {seed}: {:?}", outcome.violations);
        assert!(outcome.stats.acknowledged > 50, "seed {seed}: {}", outcome.stats);
    }
}

/// Regression and teeth (issue 7, 3.3): a context read from another key was accepted and
/// superseded this key's versions. Found by seed 34 (seed 109 once writes carried ids); contexts
/// are now sealed for their key, and with sealing switched off the write is lost again.
#[test]
fn a_foreign_context_is_refused_and_loses_nothing() {
    let faults = [Fault::Delay, Fault::ForeignContext];
    let outcome = run(&with(109, &faults));
    assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
    teeth(&faults, Mechanism::ContextSeal, "is lost", 300);
}

/// Regression and teeth (issue 7, 3.7): under last-writer-wins a write that read a version was
/// stamped after it only if its minter held that version; a client with a slow clock writing
/// through a node that lacked it lost to it, and the superseded value came back. Found by seed
/// 117 (and 230 with every fault); the context now carries the newest timestamp it has seen.
/// (Drops join the faults of the teeth: since minters keep last-resort hints, fewer replicas
/// lack a version, and without drops 1 seed in 1,300 still shows the hole; since nodes held down
/// are asked when the quorum needs them, the first seed that shows it was 773; since a node
/// that starts compares every store with every peer at once, one in the first 5,000 does,
/// seed 2443; since only the claimant moves the ring, seeds 815, 2319 and 2635 do; since nodes
/// scan for the tombstones they collect after each ring change, seeds 1000, 1992 and 2177 do;
/// since anti-entropy rounds pick peers that share partitions and far peers are tracked only
/// once heard of, seeds 2699, 3516 and 3809 do, so the search starts near the first.)
#[test]
fn lww_is_causal() {
    let faults = [Fault::Delay, Fault::Crash, Fault::Skew, Fault::Lww];
    let outcome = run(&with(117, &faults));
    assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
    let faults = [Fault::Delay, Fault::Drop, Fault::Crash, Fault::Skew, Fault::Lww];
    teeth_in(&faults, Mechanism::ContextTimestamp, "came back", 1_050..1_150);
}

/// Regression and teeth (issue 7, 3.2): a node started with n1's id, its own certificate and a
/// new address joined and took n1's entry over (seed 0 of `delay,impostor` with the mechanism off:
/// every view gave n1's id to the impostor, and replicas diverged once it stopped). Ids are now
/// bound to certificates: the join is refused and the cluster is unaffected. With the impostor
/// presenting n1's own certificate (a copied folder), nodes cannot tell it apart.
#[test]
fn an_impostor_cannot_take_a_node_id() {
    let mut options = with(0, &[Fault::Delay, Fault::Impostor]);
    options.trace = true;
    let outcome = run(&options);
    assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
    assert!(outcome.trace.iter().any(|l| l.contains("JoinRefused")), "the impostor was refused");
    options.disabled.insert(Mechanism::UniqueIds);
    let outcome = run(&options);
    assert!(outcome.violations.iter().any(|v| v.contains("the id was taken over")), "{:?}", outcome.violations);
}

/// Regression (issue 7, 3.9): racing creates of one name with different settings at two nodes
/// were both told "created" (seeds 175 and 176 of `delay,store-create` before the fix); every
/// create is now decided by the claimant.
#[test]
fn racing_store_creates_have_one_winner() {
    for seed in [175, 176] {
        let outcome = run(&with(seed, &[Fault::Delay, Fault::StoreCreates]));
        assert!(outcome.violations.is_empty(), "seed {seed}: {:?}", outcome.violations);
    }
}

/// Regression and teeth (issue 7, 3.1 with 3.5), found once smart clients joined the runs: a node
/// that crashes with unsynced records (`--sync os` and a power loss) loses the mint log of a write
/// it had minted and replicated; the client's retry, pinned to that node, was minted again by its
/// new incarnation, a second version of one write, and a delete that read only the first left the
/// second: the value came back. Seed 644 of every fault but `lose-disk` (and `impostor`, added
/// later). A node restarted after losing records now answers a resent write it has no record of
/// as indeterminate; with that switched off the value comes back again.
#[test]
fn a_retry_at_a_node_that_lost_its_mint_log_is_not_minted_twice() {
    let faults: Vec<Fault> =
        Fault::ALL.iter().copied().filter(|f| ![Fault::LoseDisk, Fault::Impostor].contains(f)).collect();
    let options = with(644, &faults);
    let outcome = run(&options);
    assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
    // Teeth: since gossip changed the runs' schedules, no seed in 0..2000 of these faults shows
    // the hole with the mechanism off (searched with `--disable lost-records`); the node test
    // `a_node_that_lost_records_does_not_mint_a_resent_write_twice` keeps the mechanism's teeth.
}

/// Regression (issue 7, 3.5): a mint whose answer is late, lost, or cut off by a crash was
/// minted again at the next node, and one put left two versions. Found before the fix by seeds
/// 0 `delay,slow`, 4 `delay,duplicate`, 0 `delay,partition` and 263 `delay,crash`; writes now
/// carry a write id and a silent minter is never replaced.
#[test]
fn a_late_or_lost_mint_is_never_minted_twice() {
    let found = [(0, Fault::SlowMessages), (4, Fault::Duplicate), (0, Fault::Partition), (263, Fault::Crash)];
    for (seed, fault) in found {
        let outcome = run(&with(seed, &[Fault::Delay, fault]));
        assert!(outcome.violations.is_empty(), "seed {seed} {fault}: {:?}", outcome.violations);
        assert!(outcome.stats.acknowledged > 50, "seed {seed} {fault}: {}", outcome.stats);
    }
}

/// Regression (issue 8): a mint a node refused as too large was delivered again by the network
/// and applied 30 ms later, once hints had shrunk the key, while the coordinator, told the write
/// was not applied, had the next node mint it: one put left two versions (seed 9384 of the
/// default faults, beyond the 5,000 seeds usually run). A copy of a refused mint now gets the
/// same answer. Switched off (`--disable one-answer`: the network's copies get ids of their own)
/// seed 9384 shows it again today; the hole is too rare for a seed search here (none in 300
/// seeds of `delay,duplicate,large` with any of crash, partition or sloppy), so the node test
/// `a_copy_of_a_refused_mint_is_refused_even_once_the_write_would_fit` keeps the teeth.
#[test]
fn a_copy_of_a_refused_mint_is_never_minted() {
    let outcome = run(&Options::new(9384));
    assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
}

/// Teeth (issue 7, 2.4): with a safety mechanism switched off, a seed that passes reports
/// violations. Without the replicas' mint log, a client's retry of a write (same id, after an
/// answer was lost) that arrives once a later write superseded its version is minted anew and
/// the superseded value comes back (seeds 29, 42 and 128 of these faults showed it first).
#[test]
fn switching_the_mint_log_off_brings_back_superseded_writes() {
    use Fault::*;
    let faults = [Delay, SlowMessages, Drop, Duplicate, Partition, OneWay, Pause, Crash, Skew];
    let seed = teeth(&faults, Mechanism::MintLog, "came back", 300);
    assert!(run(&with(seed, &faults)).stats.retries > 0);
}

/// Regression and teeth (issue 7, 3.1): a node whose disk lost writes (`--sync os` and a power
/// loss, or the memory engine) used to mint their dots again for other writes, and merges kept
/// one of two acknowledged writes. Found by seed 0 `delay,crash,os-sync` and seed 9
/// `delay,crash,lose-disk` with incarnations switched off; with them, the restarted node mints as
/// a new actor (`id#incarnation`) and nothing is lost.
#[test]
fn a_node_that_lost_writes_mints_in_a_new_incarnation() {
    for (seed, fault) in [(0, Fault::OsSync), (9, Fault::LoseDisk)] {
        let faults = [Fault::Delay, Fault::Crash, fault];
        let outcome = run(&with(seed, &faults));
        assert!(outcome.violations.is_empty(), "seed {seed} {fault}: {:?}", outcome.violations);
        teeth(&faults, Mechanism::Incarnation, "is lost", 300);
    }
}

/// Teeth (issue 10): a node that coordinates a put of a key it holds mints it and sends the
/// state to the other replicas while its own store is under way (`Node::release_mint`), so a
/// crash may lose its copy of a dot the others hold (the simulation crashes half its victims
/// while a store is under way, and a crash loses each store under way or not). With
/// incarnations switched off, a node restarted after such a crash mints that dot again for
/// another write, and one of two acknowledged writes is lost; no disk here loses anything it
/// completed (no `os-sync`, no `lose-disk`).
#[test]
fn a_mint_released_before_its_store_is_never_minted_again() {
    let faults = [Fault::Delay, Fault::Drop, Fault::Partition, Fault::Crash, Fault::SmartClients];
    for seed in 0..3 {
        let outcome = run(&with(seed, &faults));
        assert!(outcome.violations.is_empty(), "seed {seed}: {:?}", outcome.violations);
        assert!(outcome.stats.mints_released > 50, "seed {seed}: {}", outcome.stats);
    }
    teeth(&faults, Mechanism::Incarnation, "is lost", 100);
}

/// Teeth (issue 8, 2.1 and 2.2): a sloppy store's fallbacks take the writes of unreachable
/// primaries with hints and hand them all back once the primaries are up (nothing is left held
/// once the cluster settles, and nothing acknowledged is lost); with handoff switched off the
/// hints stay, and the checker says so.
#[test]
fn hinted_writes_reach_their_primaries() {
    let faults = [Fault::Delay, Fault::Crash, Fault::Pause, Fault::Partition, Fault::Sloppy];
    let seed = teeth(&faults, Mechanism::Handoff, "hints for", 100);
    let outcome = run(&with(seed, &faults));
    assert!(outcome.stats.hints_delivered > 0, "{}", outcome.stats);
}

/// Regression (issue 8): a sloppy write its primaries refused (a state grown too large) was
/// taken by fallbacks, acknowledged, and lost (most seeds of `delay,large,sloppy` once sloppy
/// stores joined the runs); a primary that refuses is now never stood in for.
#[test]
fn a_write_the_primaries_refuse_is_not_taken_by_fallbacks() {
    for seed in 0..10 {
        let outcome = run(&with(seed, &[Fault::Delay, Fault::LargeValues, Fault::Sloppy]));
        assert!(outcome.violations.is_empty(), "seed {seed}: {:?}", outcome.violations);
    }
}

/// Issue 8, 3.2 and 5.1: once the faults stop, with no read touching any key, every key's
/// replicas hold equal states: hints and Merkle anti-entropy bring back whatever a replica missed
/// (dropped replicates, records a crash lost). With anti-entropy switched off they stay apart.
#[test]
fn replicas_converge_with_no_read() {
    for seed in 0..5 {
        let outcome = run(&with(seed, &[Fault::Delay, Fault::Drop, Fault::Crash, Fault::OsSync]));
        assert!(outcome.violations.is_empty(), "seed {seed}: {:?}", outcome.violations);
    }
    teeth(&[Fault::Delay, Fault::Drop, Fault::Crash, Fault::OsSync], Mechanism::AntiEntropy, "replicas differ", 50);
}

/// Issue 8, 3.3: under the default faults tombstones are collected and no delete comes back
/// (checks 2 and 13); teeth: with a grace longer than the run nothing is collected, and check 13
/// reports the tombstones left.
#[test]
fn deletes_are_collected_and_stay_deleted() {
    let mut collected = 0;
    for seed in 0..5 {
        let outcome = run(&Options::new(seed));
        assert!(outcome.violations.is_empty(), "seed {seed}: {:?}", outcome.violations);
        collected += outcome.stats.tombstones_collected;
    }
    assert!(collected >= 5, "{collected} records collected in 5 seeds");
    let left = (0..10).any(|seed| {
        let mut options = Options::new(seed);
        options.tombstone_grace = std::time::Duration::from_secs(600);
        run(&options).violations.iter().any(|v| v.contains("still holds a tombstone"))
    });
    assert!(left, "check 13 never saw a tombstone left behind");
}

/// Issue 8, 3.3 with 3.4 (teeth): a node whose storage journal is lost (`lose-journal`: it comes
/// back with its records as of its storage's last flush into tables) must not bring back a value
/// whose tombstone was collected everywhere. Nodes checkpoint every half tombstone grace, so a
/// collected tombstone was in a table before it was removed; with checkpoints switched off the
/// tables may hold the older value, and it comes back (seed 198 of these faults, the first;
/// since joins go through ring changes, seed 1048; since restarted nodes also ask the members they
/// know to let them join, seed 1808; since nodes scan for the tombstones they collect after each
/// ring change, seed 369; since anti-entropy rounds pick peers that share partitions and far
/// peers are tracked only once heard of, seed 169).
#[test]
fn a_lost_journal_brings_back_no_collected_delete() {
    let faults = [Fault::Delay, Fault::Crash, Fault::LoseJournal];
    for seed in 0..5 {
        let outcome = run(&with(seed, &faults));
        assert!(outcome.violations.is_empty(), "seed {seed}: {:?}", outcome.violations);
    }
    teeth_in(&faults, Mechanism::Checkpoint, "came back", 200..300);
}

/// Issue 8, 3.4: records damaged on disk (the `damage` fault, in the defaults) are found,
/// served by the other replicas and rebuilt from them; teeth: with the scrub switched off, a
/// damaged record no request touches stays damaged and the convergence check reports it.
#[test]
fn damaged_records_are_found_and_rebuilt() {
    let faults = [Fault::Delay, Fault::Damage, Fault::Sloppy];
    for seed in 0..5 {
        let outcome = run(&with(seed, &faults));
        assert!(outcome.violations.is_empty(), "seed {seed}: {:?}", outcome.violations);
    }
    teeth(&faults, Mechanism::Scrub, "replicas differ", 20);
}

/// Issue 9, 5.1: the membership changes during the faults (`elastic`: two joins through
/// different members, a leave, a node crashed for good and removed) and nothing acknowledged
/// is lost, every change finishes, the ring is the live members and the nodes that went are
/// removed everywhere. Teeth: with the transfers switched off, gainers count as having their
/// partitions at once, and writes acknowledged before a change are lost.
#[test]
fn membership_changes_during_faults_lose_no_acknowledged_write() {
    let faults = [Fault::Delay, Fault::Drop, Fault::Crash, Fault::Partition, Fault::Sloppy, Fault::Elastic];
    for seed in 0..5 {
        let outcome = run(&with(seed, &faults));
        assert!(outcome.violations.is_empty(), "seed {seed}: {:?}", outcome.violations);
    }
    teeth(&[Fault::Delay, Fault::Elastic], Mechanism::Transfer, "is lost", 40);
}
