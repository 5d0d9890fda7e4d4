//! What `quickv bench` measured: latencies in HDR histograms (microseconds, 3 significant
//! digits) per kind of operation, failures counted, and the summary printed as a table or as
//! one JSON object.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::workload::OpKind;

/// The longest latency recorded exactly; longer ones are recorded as this.
const HIGHEST_US: u64 = 3_600_000_000;

/// How many distinct error messages a report keeps as examples.
const ERROR_EXAMPLES: usize = 3;

/// One worker's (or, merged, the run's) measurements.
#[derive(Debug, Default)]
pub struct Tally {
    histograms: BTreeMap<OpKind, Histogram<u64>>,
    /// Operations that failed with an error.
    pub errors: u64,
    /// Operations that got no answer within the time allowed.
    pub timeouts: u64,
    /// Reads that found no value.
    pub absent: u64,
    /// The first few distinct error messages.
    pub examples: Vec<String>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("constant bounds and precision that hdrhistogram accepts")
}

impl Tally {
    /// Records an operation that succeeded after `took`.
    pub fn record(&mut self, kind: OpKind, took: Duration) {
        let us = (took.as_micros() as u64).clamp(1, HIGHEST_US);
        self.histograms.entry(kind).or_insert_with(histogram).saturating_record(us);
    }

    /// Records a failed operation.
    pub fn failed(&mut self, message: String) {
        self.errors += 1;
        if self.examples.len() < ERROR_EXAMPLES && !self.examples.contains(&message) {
            self.examples.push(message);
        }
    }

    /// Adds `other`'s measurements to these.
    pub fn merge(&mut self, other: Tally) {
        for (kind, h) in other.histograms {
            let mine = self.histograms.entry(kind).or_insert_with(histogram);
            // Same bounds on both sides: adding cannot fail.
            let _ = mine.add(&h);
        }
        self.errors += other.errors;
        self.timeouts += other.timeouts;
        self.absent += other.absent;
        for message in other.examples {
            if self.examples.len() < ERROR_EXAMPLES && !self.examples.contains(&message) {
                self.examples.push(message);
            }
        }
    }

    /// The latencies of one kind of operation, if any succeeded.
    pub fn histogram(&self, kind: OpKind) -> Option<&Histogram<u64>> {
        self.histograms.get(&kind)
    }

    /// Every successful operation's latencies in one histogram.
    pub fn all(&self) -> Histogram<u64> {
        let mut all = histogram();
        for h in self.histograms.values() {
            let _ = all.add(h);
        }
        all
    }

    /// The summary of each kind of operation present, and of all of them, over `elapsed`.
    pub fn summaries(&self, elapsed: Duration) -> (BTreeMap<&'static str, Summary>, Summary) {
        let by_kind = OpKind::ALL
            .iter()
            .filter_map(|kind| self.histograms.get(kind).map(|h| (kind.name(), Summary::of(h, elapsed))))
            .collect();
        (by_kind, Summary::of(&self.all(), elapsed))
    }
}

/// Throughput and latency percentiles of one kind of operation, or of all.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Summary {
    /// Operations that succeeded.
    pub ops: u64,
    /// Per second of the run.
    pub ops_per_sec: f64,
    /// Mean latency, in milliseconds.
    pub mean_ms: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// The slowest.
    pub max_ms: f64,
}

impl Summary {
    fn of(h: &Histogram<u64>, elapsed: Duration) -> Summary {
        let ms = |us: u64| us as f64 / 1000.0;
        let secs = elapsed.as_secs_f64().max(1e-9);
        Summary {
            ops: h.len(),
            ops_per_sec: h.len() as f64 / secs,
            mean_ms: if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// The whole run, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The workload's name.
    pub workload: String,
    /// What it does, in words.
    pub mix: &'static str,
    /// `smart` (the client routes to replicas) or `via` (one node coordinates).
    pub mode: &'static str,
    /// The coordinating node, in `via` mode.
    pub via: Option<String>,
    /// The store.
    pub store: String,
    /// `uniform` or `zipfian`.
    pub distribution: String,
    /// Records the keys were chosen among.
    pub records: u64,
    /// Bytes per value written (and per ping payload).
    pub value_size: usize,
    /// Requests in flight.
    pub concurrency: usize,
    /// How long the run took, in seconds.
    pub duration_s: f64,
    /// Every successful operation.
    #[serde(flatten)]
    pub all: Summary,
    /// Failed with an error.
    pub errors: u64,
    /// No answer in time.
    pub timeouts: u64,
    /// Reads that found no value.
    pub absent: u64,
    /// A few of the error messages.
    pub error_examples: Vec<String>,
    /// Per kind of operation.
    pub by_op: BTreeMap<&'static str, Summary>,
    /// Operations per second over the run: (seconds since the start, ops/s in the interval
    /// ending then).
    pub throughput: Vec<(f64, f64)>,
}

impl Report {
    /// The table `quickv bench` prints.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mode = match &self.via {
            Some(via) => format!("through {via} coordinating"),
            None => "smart client (straight to the replicas)".to_owned(),
        };
        out.push_str(&format!(
            "workload {} ({}), {} over {} records, {}-byte values, {} in flight, store {}, {mode}\n",
            self.workload, self.mix, self.distribution, self.records, self.value_size, self.concurrency, self.store
        ));
        out.push_str(&format!(
            "{} ops in {:.2} s: {:.0} ops/s; {} errors, {} timeouts{}\n",
            self.all.ops,
            self.duration_s,
            self.all.ops_per_sec,
            self.errors,
            self.timeouts,
            if self.absent > 0 { format!(", {} reads found nothing", self.absent) } else { String::new() }
        ));
        out.push_str(&format!(
            "{:<8} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}   (latency in ms)\n",
            "op", "count", "ops/s", "p50", "p90", "p99", "p99.9", "max"
        ));
        let rows = self.by_op.iter().map(|(name, s)| (*name, s));
        let rows = rows.chain((self.by_op.len() > 1).then_some(("all", &self.all)));
        for (name, s) in rows {
            out.push_str(&format!(
                "{name:<8} {:>9} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}\n",
                s.ops, s.ops_per_sec, s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms
            ));
        }
        for example in &self.error_examples {
            out.push_str(&format!("error: {example}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Percentiles come from what was recorded; merged tallies add up; errors keep a few
    /// distinct examples.
    #[test]
    fn tallies_merge_and_summarise() {
        let mut a = Tally::default();
        for ms in 1..=100u64 {
            a.record(OpKind::Read, Duration::from_millis(ms));
        }
        let mut b = Tally::default();
        b.record(OpKind::Update, Duration::from_millis(500));
        for _ in 0..5 {
            b.failed("unavailable".into());
        }
        b.failed("refused".into());
        b.timeouts = 2;
        a.merge(b);
        assert_eq!((a.all().len(), a.errors, a.timeouts), (101, 6, 2));
        assert_eq!(a.examples, ["unavailable", "refused"]);
        let (by_kind, all) = a.summaries(Duration::from_secs(2));
        let read = by_kind["read"];
        assert_eq!(read.ops, 100);
        assert!((read.p50_ms - 50.0).abs() < 0.1 && (read.p99_ms - 99.0).abs() < 0.1, "{read:?}");
        assert!((read.ops_per_sec - 50.0).abs() < 1e-9);
        assert!((all.max_ms - 500.0).abs() < 0.5, "{all:?}");
        assert_eq!(by_kind["update"].ops, 1);
    }
}
