//! `quickv bench`: load in the YCSB tradition against a running cluster, with `ping`, a no-op
//! on the same request path, as the ceiling every other figure is compared with.
//!
//! `--concurrency` workers each run one request at a time until `--ops` operations (`--records`
//! for `load`) or `--duration` seconds are done. Latencies go into HDR histograms; the end prints
//! a table (or, with `--json`, one JSON object) and `--plot` draws the percentile curve and the
//! throughput over the run. Updates write over the context the last read or write of the record
//! returned, as an application would (a blind write over an existing value would add a sibling
//! each time). The exit status is 1 when any operation failed or timed out.

mod plot;
mod report;
mod target;
mod workload;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use quickv_client::transport::Transport;
use quickv_client::{CausalContext, Client, ClusterCa, StoreName, Value, tls};
use tokio::time::Instant;

use report::{Report, Tally};
use target::Target;
use workload::{Chooser, Op, OpKind};
pub use workload::{Distribution, Workload};

/// How often the run samples its throughput (and moves the progress bar).
const SAMPLE: Duration = Duration::from_millis(250);

/// The options of `quickv bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// load (insert --records keys), a (50% reads, 50% updates), b (95/5), c (reads), d (reads
    /// of the latest keys, 5% inserts) or ping (no-op requests: the transport's ceiling).
    #[arg(long, short = 'w', value_enum)]
    pub workload: Workload,
    /// How keys are chosen among the records.
    #[arg(long, value_enum, default_value = "zipfian")]
    pub distribution: Distribution,
    /// Records: keys PREFIX0 to PREFIX<records - 1>, inserted by `load`, used by the others.
    #[arg(long, default_value_t = 10_000)]
    pub records: u64,
    /// Bytes per value written (and per ping's payload).
    #[arg(long, default_value_t = 1024)]
    pub value_size: usize,
    /// Requests in flight.
    #[arg(long, short = 'c', default_value_t = 32)]
    pub concurrency: usize,
    /// Operations to run (not for `load`, which inserts --records).
    #[arg(long, default_value_t = 20_000)]
    pub ops: u64,
    /// Run for this many seconds instead of a number of operations.
    #[arg(long)]
    pub duration: Option<f64>,
    /// The store.
    #[arg(long, default_value = StoreName::DEFAULT)]
    pub store: String,
    /// What keys start with.
    #[arg(long, default_value = "bench:")]
    pub prefix: String,
    /// Send every request to this node, which coordinates it, instead of straight to the
    /// replicas: compares the smart client with a plain caller in one run.
    #[arg(long)]
    pub via: Option<SocketAddr>,
    /// An operation still unanswered after this many seconds counts as a timeout.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Draw the latency percentile curve and the throughput over time into this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// What every worker shares.
struct Shared {
    target: Target,
    args: BenchArgs,
    value: Value,
    /// Operations taken by workers so far.
    issued: AtomicU64,
    /// Operations finished (done, failed or timed out).
    finished: AtomicU64,
    /// Total operations, unless the run is timed.
    total: Option<u64>,
    deadline: Option<Instant>,
    /// The context of the last read or write of each record updated or read.
    contexts: Mutex<HashMap<u64, CausalContext>>,
    /// Workload d: the next record to insert, and the inserts acknowledged (every record below
    /// the first number exists; the set holds those acknowledged past it).
    allocated: AtomicU64,
    acknowledged: Mutex<(u64, BTreeSet<u64>)>,
}

impl Shared {
    fn key(&self, record: u64) -> Vec<u8> {
        format!("{}{record}", self.args.prefix).into_bytes()
    }

    fn existing(&self) -> u64 {
        self.acknowledged.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    fn inserted(&self, record: u64) {
        let mut acknowledged = self.acknowledged.lock().unwrap_or_else(|p| p.into_inner());
        let (below, past) = &mut *acknowledged;
        past.insert(record);
        while past.remove(below) {
            *below += 1;
        }
    }

    fn context(&self, record: u64) -> CausalContext {
        let contexts = self.contexts.lock().unwrap_or_else(|p| p.into_inner());
        contexts.get(&record).cloned().unwrap_or_else(CausalContext::empty)
    }

    fn remember(&self, record: u64, context: CausalContext) {
        self.contexts.lock().unwrap_or_else(|p| p.into_inner()).insert(record, context);
    }

    /// Whether a worker takes another operation; its number if so.
    fn take(&self) -> Option<u64> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let count = self.issued.fetch_add(1, Ordering::Relaxed);
        self.total.is_none_or(|total| count < total).then_some(count)
    }

    /// Performs one operation; what it found.
    async fn perform(&self, op: Op) -> Result<Found, String> {
        let key = self.key(op.record());
        match op {
            Op::Read(record) => {
                let read = self.target.read(key).await?;
                if read.present {
                    self.remember(record, read.context);
                    Ok(Found::Present)
                } else {
                    Ok(Found::Absent)
                }
            }
            Op::Update(record) => {
                let context = self.target.write(key, self.value.clone(), self.context(record)).await?;
                self.remember(record, context);
                Ok(Found::Present)
            }
            Op::Insert(record) => {
                self.target.write(key, self.value.clone(), CausalContext::empty()).await?;
                if self.args.workload == Workload::D {
                    self.inserted(record);
                }
                Ok(Found::Present)
            }
            Op::Ping(_) => {
                self.target.ping(key, vec![0x5a; self.args.value_size]).await?;
                Ok(Found::Present)
            }
        }
    }
}

enum Found {
    Present,
    Absent,
}

/// One worker: operations one after the other until the run ends.
async fn worker(shared: Arc<Shared>, seed: u64) -> Tally {
    let args = &shared.args;
    let mut chooser = Chooser::new(args.workload, args.distribution, args.records, seed);
    let mut tally = Tally::default();
    let timeout = Duration::from_secs_f64(args.timeout);
    while let Some(count) = shared.take() {
        let existing = if args.workload == Workload::D { shared.existing() } else { args.records };
        let op = chooser.next(count, existing, || shared.allocated.fetch_add(1, Ordering::Relaxed));
        let begun = Instant::now();
        match tokio::time::timeout(timeout, shared.perform(op)).await {
            Ok(Ok(found)) => {
                tally.record(op.kind(), begun.elapsed());
                tally.absent += u64::from(matches!(found, Found::Absent));
            }
            Ok(Err(message)) => tally.failed(message),
            Err(_) => tally.timeouts += 1,
        }
        shared.finished.fetch_add(1, Ordering::Relaxed);
    }
    tally
}

/// Runs the benchmark against `client`'s cluster; prints the report.
pub async fn run(client: &Client, ca: &ClusterCa, args: BenchArgs, json: bool) -> Result<ExitCode> {
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(args.records > 0, "--records must be at least 1");
    anyhow::ensure!(args.timeout > 0.0, "--timeout must be positive");
    let store = client.store(&args.store).await?;
    let target = match args.via {
        None => Target::Smart(store),
        Some(addr) => {
            let config = tls::client_config(ca, None)?;
            let bind: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
            let transport = Transport::client(config, bind, Duration::from_secs_f64(args.timeout))
                .context("opening a QUIC endpoint")?;
            Target::Via { transport, addr, store: store.name().clone() }
        }
    };
    let total = match (args.workload, args.duration) {
        (Workload::Load, _) => Some(args.records),
        (_, Some(_)) => None,
        (_, None) => Some(args.ops),
    };
    let started = Instant::now();
    let deadline = args.duration.filter(|_| args.workload != Workload::Load);
    let shared = Arc::new(Shared {
        value: Value::from(vec![0x5a; args.value_size]),
        issued: AtomicU64::new(0),
        finished: AtomicU64::new(0),
        total,
        deadline: deadline.map(|secs| started + Duration::from_secs_f64(secs)),
        contexts: Mutex::new(HashMap::new()),
        allocated: AtomicU64::new(args.records),
        acknowledged: Mutex::new((args.records, BTreeSet::new())),
        target,
        args: args.clone(),
    });
    let bar = progress_bar(total, deadline, json);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let workers: Vec<_> = (0..args.concurrency as u64)
        .map(|i| tokio::spawn(worker(shared.clone(), seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15))))
        .collect();
    let mut throughput = Vec::new();
    let mut ticker = tokio::time::interval_at(started + SAMPLE, SAMPLE);
    let (mut last, mut last_at) = (0u64, started);
    let all_done = async {
        let mut tally = Tally::default();
        for worker in workers {
            tally.merge(worker.await.context("a bench worker failed")?);
        }
        anyhow::Ok(tally)
    };
    tokio::pin!(all_done);
    let tally = loop {
        tokio::select! {
            tally = &mut all_done => break tally?,
            at = ticker.tick() => {
                let finished = shared.finished.load(Ordering::Relaxed);
                let rate = (finished - last) as f64 / (at - last_at).as_secs_f64();
                throughput.push(((at - started).as_secs_f64(), rate));
                (last, last_at) = (finished, at);
                match deadline {
                    Some(_) => bar.set_position((at - started).as_millis() as u64),
                    None => bar.set_position(finished),
                }
                bar.set_message(format!("{rate:.0} ops/s"));
            }
        }
    };
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let finished = shared.finished.load(Ordering::Relaxed);
    if finished > last {
        let rate = (finished - last) as f64 / (Instant::now() - last_at).as_secs_f64().max(1e-3);
        throughput.push((elapsed.as_secs_f64(), rate));
    }
    let (by_op, all) = tally.summaries(elapsed);
    let report = Report {
        workload: format!("{:?}", args.workload).to_lowercase(),
        mix: args.workload.describe(),
        mode: shared.target.mode(),
        via: args.via.map(|a| a.to_string()),
        store: args.store.clone(),
        distribution: format!("{:?}", args.distribution).to_lowercase(),
        records: args.records,
        value_size: args.value_size,
        concurrency: args.concurrency,
        duration_s: elapsed.as_secs_f64(),
        all,
        errors: tally.errors,
        timeouts: tally.timeouts,
        absent: tally.absent,
        error_examples: tally.examples.clone(),
        by_op,
        throughput,
    };
    if let Some(path) = &args.plot {
        let title = format!(
            "quickv bench: workload {}, {} ({}), {:.0} ops/s",
            report.workload, report.mode, report.distribution, report.all.ops_per_sec
        );
        let all = tally.all();
        let mut curves: Vec<(&'static str, &hdrhistogram::Histogram<u64>)> = Vec::new();
        for kind in OpKind::ALL {
            if let Some(h) = tally.histogram(kind) {
                curves.push((kind.name(), h));
            }
        }
        if curves.len() > 1 {
            curves.push(("all", &all));
        }
        plot::draw(path, &title, &curves, &report.throughput)?;
    }
    if json {
        outln!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
        if let Some(path) = &args.plot {
            outln!("plot: {}", path.display());
        }
    }
    Ok(if report.errors + report.timeouts > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn progress_bar(total: Option<u64>, deadline: Option<f64>, json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let (length, unit) = match (total, deadline) {
        (Some(total), _) => (total, "ops"),
        (None, Some(secs)) => ((secs * 1000.0) as u64, "ms"),
        (None, None) => (0, "ops"),
    };
    let bar = ProgressBar::new(length);
    let template = format!("{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit}  {{msg}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
