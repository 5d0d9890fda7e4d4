//! A Prometheus endpoint per node (`--metrics ADDR`), with the `metrics` crates.
//!
//! Each node has a recorder of its own (not the process-wide one: `quickv-node dev` runs several
//! nodes in one process) and serves it on its own address; any `GET` returns the text format.
//! The driver records what passes through it; it observes, it decides nothing:
//!
//! - `quickv_requests_total{kind}` and `quickv_request_seconds{kind}` (a histogram, from the
//!   request's arrival to its answer) for every request, by its name (`get`, `coordinate_put`,
//!   `gossip`, ...); `quickv_errors_total{kind}` for every error answered, by error kind;
//! - from the node machine, refreshed at most once a second: `quickv_peer_up{peer}` (1 up,
//!   0.5 suspect, 0 down), `quickv_hints_pending{peer}`, and the counters `quickv_hints_delivered_total`,
//!   `quickv_hints_dropped_total`, `quickv_replica_requests_total`, `quickv_misrouted_total`,
//!   `quickv_stale_routed_total`,
//!   `quickv_coordinated_total`, `quickv_coordinations_rerun_total` (run again with a newer
//!   ring after a replica answered `StaleRing`), `quickv_forwarded_total`,
//!   `quickv_mints_released_total` (mints of coordinated puts replicated while the node's own
//!   store was under way), `quickv_refused_total`, and for
//!   anti-entropy `quickv_anti_entropy_exchanges_total`, `quickv_anti_entropy_pulled_total` and
//!   `quickv_anti_entropy_pushed_total` (keys moved) and `quickv_anti_entropy_bytes_total`;
//!   tombstones collected and fallback copies dropped after handoff
//!   (`quickv_tombstones_collected_total`, `quickv_copies_dropped_total`), tombstones this node
//!   collects waiting (`quickv_tombstones_pending`);
//! - storage: the bytes the engine holds (`quickv_storage_bytes`, on disk for the durable one),
//!   records found damaged and those replaced since by a replica write
//!   (`quickv_damaged_records_total`, `quickv_damaged_repaired_total`), ranges of records that
//!   could not be read at all (`quickv_damaged_ranges_total`), and damaged journal files
//!   moved aside or cut short when the node started (`quickv_journal_files_quarantined`,
//!   `quickv_journal_files_truncated`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use quickv_core::liveness::{PeerState, StatusReport};
use quickv_core::node::NodeStats;

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// A node's metrics and the handles of what it records.
pub(crate) struct Metrics {
    recorder: PrometheusRecorder,
    counters: HashMap<(&'static str, String), Counter>,
    /// Per request kind: its count and its latencies (the request path looks them up without
    /// allocating).
    requests: HashMap<&'static str, (Counter, Histogram)>,
    gauges: HashMap<(&'static str, String), Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}: {reason}")]
pub struct MetricsError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// Why.
    pub reason: String,
}

impl Metrics {
    /// Starts serving on `addr`; returns the recorder and the server's task to spawn.
    pub(crate) fn serve(
        addr: SocketAddr,
    ) -> Result<(Metrics, impl std::future::Future<Output = ()> + Send + 'static), MetricsError> {
        let (recorder, exporter) = PrometheusBuilder::new()
            .with_http_listener(addr)
            .set_buckets(&[0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0])
            .and_then(|b| b.build())
            .map_err(|e| MetricsError { addr, reason: e.to_string() })?;
        let server = async move {
            if let Err(e) = exporter.await {
                tracing::error!(%addr, "the metrics endpoint stopped: {e:?}");
            }
        };
        let metrics = Metrics { recorder, counters: HashMap::new(), requests: HashMap::new(), gauges: HashMap::new() };
        Ok((metrics, server))
    }

    fn counter(&mut self, name: &'static str, label: Option<(&'static str, &str)>) -> &Counter {
        let recorder = &self.recorder;
        let key = (name, label.map_or(String::new(), |(_, v)| v.to_owned()));
        self.counters.entry(key).or_insert_with(|| recorder.register_counter(&key_of(name, label), &METADATA))
    }

    fn gauge(&mut self, name: &'static str, label: Option<(&'static str, &str)>) -> &Gauge {
        let recorder = &self.recorder;
        let key = (name, label.map_or(String::new(), |(_, v)| v.to_owned()));
        self.gauges.entry(key).or_insert_with(|| recorder.register_gauge(&key_of(name, label), &METADATA))
    }

    fn request_kind(&mut self, kind: &'static str) -> &(Counter, Histogram) {
        let recorder = &self.recorder;
        self.requests.entry(kind).or_insert_with(|| {
            let label = Some(("kind", kind));
            let count = recorder.register_counter(&key_of("quickv_requests_total", label), &METADATA);
            let took = recorder.register_histogram(&key_of("quickv_request_seconds", label), &METADATA);
            (count, took)
        })
    }

    /// A request named `kind` arrived.
    pub(crate) fn request(&mut self, kind: &'static str) {
        self.request_kind(kind).0.increment(1);
    }

    /// A request named `kind` was answered after `took`; `error` names the error kind if it
    /// failed.
    pub(crate) fn answered(&mut self, kind: &'static str, took: Duration, error: Option<&str>) {
        self.request_kind(kind).1.record(took.as_secs_f64());
        if let Some(error) = error {
            self.counter("quickv_errors_total", Some(("kind", error))).increment(1);
        }
    }

    /// What the engine's journal lost when it opened: files moved aside, files cut short.
    pub(crate) fn journal_loss(&mut self, loss: &crate::storage::JournalLoss) {
        self.gauge("quickv_journal_files_quarantined", None).set(loss.quarantined.len() as f64);
        self.gauge("quickv_journal_files_truncated", None).set(loss.truncated.len() as f64);
    }

    /// Takes the storage's size (`None`: the engine could not tell) and the tombstones waiting
    /// for collection here.
    pub(crate) fn storage(&mut self, bytes: Option<u64>, tombstones: usize) {
        if let Some(bytes) = bytes {
            self.gauge("quickv_storage_bytes", None).set(bytes as f64);
        }
        self.gauge("quickv_tombstones_pending", None).set(tombstones as f64);
    }

    /// Takes the node machine's counters and its verdicts and hints per peer.
    pub(crate) fn node(&mut self, stats: NodeStats, status: &StatusReport) {
        let totals = [
            ("quickv_hints_delivered_total", stats.hints_delivered),
            ("quickv_hints_dropped_total", stats.hints_dropped),
            ("quickv_replica_requests_total", stats.replica_requests),
            ("quickv_misrouted_total", stats.misrouted),
            ("quickv_stale_routed_total", stats.stale_routed),
            ("quickv_coordinated_total", stats.coordinated),
            ("quickv_coordinations_rerun_total", stats.coordinations_rerun),
            ("quickv_forwarded_total", stats.forwarded),
            ("quickv_mints_released_total", stats.mints_released),
            ("quickv_refused_total", stats.refused),
            ("quickv_anti_entropy_exchanges_total", stats.anti_entropy_exchanges),
            ("quickv_anti_entropy_pulled_total", stats.anti_entropy_pulled),
            ("quickv_anti_entropy_pushed_total", stats.anti_entropy_pushed),
            ("quickv_anti_entropy_bytes_total", stats.anti_entropy_bytes),
            ("quickv_tombstones_collected_total", stats.tombstones_collected),
            ("quickv_copies_dropped_total", stats.copies_dropped),
            ("quickv_damaged_records_total", stats.damaged_records),
            ("quickv_damaged_ranges_total", stats.damaged_ranges),
            ("quickv_damaged_repaired_total", stats.damaged_repaired),
        ];
        for (name, value) in totals {
            self.counter(name, None).absolute(value);
        }
        for peer in &status.peers {
            let up = match peer.state {
                PeerState::Up => 1.0,
                PeerState::Suspect => 0.5,
                PeerState::Down => 0.0,
            };
            self.gauge("quickv_peer_up", Some(("peer", peer.id.as_str()))).set(up);
            self.gauge("quickv_hints_pending", Some(("peer", peer.id.as_str()))).set(peer.hints as f64);
        }
    }
}

fn key_of(name: &'static str, label: Option<(&'static str, &str)>) -> Key {
    match label {
        Some((label, value)) => Key::from_parts(name, vec![Label::new(label, value.to_owned())]),
        None => Key::from_name(name),
    }
}
