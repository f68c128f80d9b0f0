//! Counters per stage, for `/metrics` and the status API.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What one stage counts. Every field is a plain atomic the stage updates
/// as it goes; readers take a snapshot whenever they like.
#[derive(Debug, Default)]
pub struct StageMetrics {
    /// The stage's name (`wal`, `parse`, `index`, `correlate`, `store` …).
    pub name: String,
    /// Items (events, records, changes) taken in.
    pub items_in: AtomicU64,
    /// Items handed on.
    pub items_out: AtomicU64,
    /// Items that could not be used (parse errors, rejected records).
    pub errors: AtomicU64,
    /// Items waiting in the stage's input queue.
    pub queue_depth: Arc<AtomicU64>,
    /// How far behind its input the stage is, in ms (event acked → handled).
    pub lag_ms: AtomicU64,
    /// Unix time of the stage's last commit or checkpoint, in ms.
    pub last_commit_unix_ms: AtomicU64,
    /// Correlation delay: committed event → incident change written, in ms.
    pub delay_ms: AtomicU64,
}

impl StageMetrics {
    /// Counters for a stage called `name`.
    pub fn new(name: &str) -> Arc<StageMetrics> {
        Arc::new(StageMetrics {
            name: name.to_string(),
            ..StageMetrics::default()
        })
    }

    /// Records a commit or checkpoint now.
    pub fn committed_now(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_commit_unix_ms.store(now, Ordering::Relaxed);
    }
}

/// A metric family: name, type, help and how to read it from a stage
/// (in the family's base unit: seconds for times, as Prometheus wants).
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&StageMetrics) -> f64,
);

/// Every stage of one pipeline.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    stages: Arc<Mutex<Vec<Arc<StageMetrics>>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Counters for a new stage, registered here.
    pub fn stage(&self, name: &str) -> Arc<StageMetrics> {
        let metrics = StageMetrics::new(name);
        self.stages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(metrics.clone());
        metrics
    }

    /// The registered stages.
    pub fn stages(&self) -> Vec<Arc<StageMetrics>> {
        self.stages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The counters in the Prometheus text exposition format.
    pub fn render_prometheus(&self) -> String {
        let stages = self.stages();
        let mut out = String::new();
        let families: [Family; 7] = [
            (
                "relive_stage_items_in_total",
                "counter",
                "Items a stage took in.",
                |m| m.items_in.load(Ordering::Relaxed) as f64,
            ),
            (
                "relive_stage_items_out_total",
                "counter",
                "Items a stage handed on.",
                |m| m.items_out.load(Ordering::Relaxed) as f64,
            ),
            (
                "relive_stage_errors_total",
                "counter",
                "Items a stage could not use.",
                |m| m.errors.load(Ordering::Relaxed) as f64,
            ),
            (
                "relive_stage_queue_depth",
                "gauge",
                "Items waiting in a stage's input queue.",
                |m| m.queue_depth.load(Ordering::Relaxed) as f64,
            ),
            (
                "relive_stage_lag_seconds",
                "gauge",
                "How far behind its input a stage is.",
                |m| m.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
            (
                "relive_stage_last_commit_timestamp_seconds",
                "gauge",
                "Unix time of a stage's last commit.",
                |m| m.last_commit_unix_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
            (
                "relive_stage_delay_seconds",
                "gauge",
                "Committed event to incident change, last batch.",
                |m| m.delay_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
        ];
        for (name, kind, help, get) in families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for m in &stages {
                let _ = writeln!(out, "{name}{{stage=\"{}\"}} {}", m.name, get(m));
            }
        }
        out
    }
}
