//! `quickv-sim`: runs seeds of the deterministic simulation.
//!
//! ```text
//! quickv-sim [--seeds N] [--first S] [--faults LIST] [--trace] [--tombstone-grace-ms MS] [--disable NAME]
//! quickv-sim --gossip-scale 10,100,1000 [--plot FILE.svg]
//! quickv-sim --ring-scale 1000,10000
//! ```
//!
//! Runs seeds S..S+N (default 0..100) with the faults in LIST (default `default`; `all` for every
//! fault, or names such as `delay,crash`), prints each failing seed with the command that replays
//! it alone, and ends with `N seeds, V violations`. Exits 1 when V > 0. `--trace` prints the
//! trace of every run (use it with `--seeds 1`). `--disable NAME` switches a safety mechanism
//! off, to see what the checkers report without it (never for real runs). `--gossip-scale`
//! measures what gossip and a ring change cost each node at each cluster size instead (see
//! `quickv_sim::scale`), and `--plot` draws them as an SVG chart; `--ring-scale` times the ring
//! alone (the claimant's next ring, lookups) at sizes too large to run every node's machine.

use std::process::ExitCode;
use std::time::Instant;

use quickv_sim::{FaultList, Mechanism, Options, run};

fn main() -> ExitCode {
    let mut seeds = 100u64;
    let mut first = 0u64;
    let mut faults = None;
    let mut trace = false;
    let mut grace = None;
    let mut disabled = std::collections::BTreeSet::new();
    let (mut scale, mut plot) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().unwrap_or_else(|| usage(&format!("{name} needs a value")));
        match arg.as_str() {
            "--seeds" => seeds = value("--seeds").parse().unwrap_or_else(|_| usage("--seeds takes a number")),
            "--first" => first = value("--first").parse().unwrap_or_else(|_| usage("--first takes a number")),
            "--faults" => faults = Some(value("--faults").parse::<FaultList>().unwrap_or_else(|e| usage(&e))),
            "--trace" => trace = true,
            "--tombstone-grace-ms" => {
                let ms: u64 = value("--tombstone-grace-ms").parse().unwrap_or_else(|_| usage("takes milliseconds"));
                grace = Some(std::time::Duration::from_millis(ms));
            }
            "--disable" => {
                let name = value("--disable");
                match Mechanism::ALL.iter().find(|m| m.name() == name) {
                    Some(m) => {
                        disabled.insert(*m);
                    }
                    None => usage(&format!("unknown mechanism {name}: expected one of {}", mechanism_names(", "))),
                }
            }
            "--gossip-scale" => scale = Some(value("--gossip-scale")),
            "--plot" => plot = Some(value("--plot")),
            "--ring-scale" => {
                for size in value("--ring-scale").split(',') {
                    let nodes: usize = size.trim().parse().unwrap_or_else(|_| usage("--ring-scale takes sizes"));
                    // At least four partitions a member, and 2^16 by default.
                    let bits = (nodes * 4).next_power_of_two().trailing_zeros().max(16) as u8;
                    let r = quickv_sim::scale::ring_at_scale(nodes, bits);
                    println!(
                        "{nodes} nodes, 2^{bits} partitions: first ring {:.0} ms; a join's next ring {:.0} ms, moving {} partitions ({} replicas to the joiner); the view {} bytes; a preference-list lookup {:.0} ns",
                        r.build_ms, r.join_ms, r.moved_partitions, r.joiner_gains, r.view_bytes, r.lookup_ns
                    );
                }
                return ExitCode::SUCCESS;
            }
            "--help" | "-h" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if let Some(sizes) = scale {
        return gossip_scale(&sizes, plot.as_deref());
    }
    let started = Instant::now();
    let mut violations = 0usize;
    for seed in first..first.saturating_add(seeds) {
        let mut options = Options::new(seed);
        if let Some(FaultList(set)) = &faults {
            options.faults = set.clone();
        }
        options.trace = trace;
        options.disabled = disabled.clone();
        if let Some(grace) = grace {
            options.tombstone_grace = grace;
        }
        let outcome = run(&options);
        for line in &outcome.trace {
            println!("{line}");
        }
        if !outcome.violations.is_empty() {
            violations += outcome.violations.len();
            println!("seed {seed}: {} violations ({})", outcome.violations.len(), outcome.stats);
            for v in &outcome.violations {
                println!("  {v}");
            }
            let names: Vec<String> = options.faults.iter().map(|f| f.to_string()).collect();
            println!(
                "  replay: cargo run --release -p quickv-sim -- --seeds 1 --first {seed} --faults {} --trace{}{}",
                if names.is_empty() { "none".to_string() } else { names.join(",") },
                disabled.iter().map(|m| format!(" --disable {}", m.name())).collect::<String>(),
                grace.map(|g| format!(" --tombstone-grace-ms {}", g.as_millis())).unwrap_or_default()
            );
        } else if trace {
            println!("seed {seed}: ok ({})", outcome.stats);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!("{:.1} seeds/s", seeds as f64 / elapsed.max(1e-9));
    println!("{seeds} seeds, {violations} violations");
    if violations > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("quickv-sim: {problem}");
    }
    eprintln!(
        "usage: quickv-sim [--seeds N] [--first S] [--faults default|all|none|NAME,...] [--trace] [--tombstone-grace-ms MS] [--disable {}]",
        mechanism_names("|")
    );
    eprintln!("       quickv-sim --gossip-scale SIZE,... [--plot FILE.svg]");
    eprintln!("       quickv-sim --ring-scale SIZE,...");
    std::process::exit(2)
}

fn mechanism_names(separator: &str) -> String {
    Mechanism::ALL.iter().map(|m| m.name()).collect::<Vec<_>>().join(separator)
}

/// `--gossip-scale`: one line per cluster size, and the chart if asked for.
fn gossip_scale(sizes: &str, plot: Option<&str>) -> ExitCode {
    let mut reports = Vec::new();
    for size in sizes.split(',') {
        let nodes: usize = size.trim().parse().unwrap_or_else(|_| usage("--gossip-scale takes sizes"));
        let started = Instant::now();
        let r = quickv_sim::scale::measure(nodes);
        println!(
            "{nodes} nodes, 2^{} partitions: steady {:.0} B/s per node (max {:.0}), {} live peers held down; a store create reached every node in {:.1} s at {:.0} B/s per node; a join was agreed by every node in {:.1} s at {:.0} B/s per node; a preference-list lookup took {:.0} ns; a stopped node was down at every node in {:.1} s ({} live peers held down) ({:.1} s to simulate)",
            r.partition_bits,
            r.steady_bytes_per_node_per_sec,
            r.steady_max_bytes_per_node_per_sec,
            r.steady_false_downs,
            r.change_spread_secs,
            r.change_bytes_per_node_per_sec,
            r.join_agreed_secs,
            r.join_bytes_per_node_per_sec,
            r.lookup_ns,
            r.stop_detected_secs,
            r.stop_false_downs,
            started.elapsed().as_secs_f64()
        );
        reports.push(r);
    }
    if let Some(path) = plot {
        if let Err(e) = std::fs::write(path, quickv_sim::scale::plot(&reports)) {
            eprintln!("quickv-sim: cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
        println!("chart written to {path}");
    }
    ExitCode::SUCCESS
}
