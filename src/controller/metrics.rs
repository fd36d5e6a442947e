//! Prometheus metrics: what the operator did, how long it took, and what state namespaces are in.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

use super::index::IndexMetrics;
use super::reports::ReportFinding;
use crate::engine::Kind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    /// ok, or the error's metric label.
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceStateLabels {
    baseline: String,
    /// compliant, drifted, exempt or pending.
    state: String,
}

/// Every metric the operator exports, registered under the `zerotrust` prefix.
pub struct Metrics {
    reconciles: Family<ResultLabels, Counter>,
    reconcile_duration: Histogram,
    namespaces: Family<NamespaceStateLabels, Gauge>,
    drift_detected: Family<KindLabels, Counter>,
    drift_repaired: Family<KindLabels, Counter>,
    pub onboarding_latency: Histogram,
    pub leader: Gauge,
    pub status_writes: Counter,
    cache_dropped: Family<KindLabels, Counter>,
    report_findings: Family<ReasonLabels, Counter>,
    cache_bytes: Family<CacheLabels, Gauge>,
    allocator: AllocatorMetrics,
    registry: Registry,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: String,
}

/// Observes a reconcile's duration when dropped, however the reconcile ends.
pub struct ReconcileTimer {
    histogram: Histogram,
    start: std::time::Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("zerotrust");
        let r = &mut registry;
        let metrics = Metrics {
            reconciles: registered(
                r,
                "reconciles",
                "Namespace reconciles by result",
                Family::<ResultLabels, Counter>::default(),
            ),
            // 1 ms .. ~16 s
            reconcile_duration: registered(
                r,
                "reconcile_duration_seconds",
                "Time to reconcile one namespace",
                Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            ),
            namespaces: registered(
                r,
                "namespaces",
                "Selected namespaces per baseline by state",
                Family::<NamespaceStateLabels, Gauge>::default(),
            ),
            drift_detected: registered(
                r,
                "drift_detected",
                "Drift items found, by kind",
                Family::<KindLabels, Counter>::default(),
            ),
            drift_repaired: registered(
                r,
                "drift_repaired",
                "Drift items repaired, by kind",
                Family::<KindLabels, Counter>::default(),
            ),
            // 10 ms .. ~160 s
            onboarding_latency: registered(
                r,
                "onboarding_latency_seconds",
                "From namespace creation to its first compliant reconcile",
                Histogram::new(exponential_buckets(0.01, 2.0, 15)),
            ),
            leader: registered(
                r,
                "leader",
                "1 while this process holds the leader lease",
                Gauge::default(),
            ),
            status_writes: registered(
                r,
                "status_writes",
                "SecurityBaseline status writes",
                Counter::default(),
            ),
            cache_dropped: registered(
                r,
                "cache_dropped_objects",
                "Watched objects the caches could not hold or read back (each is also logged)",
                Family::<KindLabels, Counter>::default(),
            ),
            cache_bytes: registered(
                r,
                "cache_bytes",
                "Bytes of object JSON the caches hold, by cache",
                Family::<CacheLabels, Gauge>::default(),
            ),
            report_findings: registered(
                r,
                "policy_report_findings",
                "Our PolicyReports edited, deleted or squatted by someone else, by reason",
                Family::<ReasonLabels, Counter>::default(),
            ),
            allocator: AllocatorMetrics::registered(r),
            registry,
        };
        metrics.start_counters_at_zero();
        metrics
    }

    /// Gives every counter family its series from the first scrape, at zero, so `rate()` and
    /// `absent()` in dashboards and alerts work before the first reconcile or drift.
    fn start_counters_at_zero(&self) {
        self.reconciles.get_or_create_owned(&ResultLabels {
            result: "ok".to_string(),
        });
        for reason in ReportFinding::REASONS {
            self.report_findings.get_or_create_owned(&ReasonLabels {
                reason: reason.to_string(),
            });
        }
        let drift_kinds = Kind::GENERATED
            .into_iter()
            .chain([Kind::Namespace, Kind::ServiceAccount]);
        for kind in drift_kinds {
            let labels = KindLabels {
                kind: kind.to_string(),
            };
            self.drift_detected.get_or_create_owned(&labels);
            self.drift_repaired.get_or_create_owned(&labels);
        }
    }

    /// Starts timing a reconcile; the time is recorded when the guard drops.
    pub fn time_reconcile(&self) -> ReconcileTimer {
        ReconcileTimer {
            histogram: self.reconcile_duration.clone(),
            start: std::time::Instant::now(),
        }
    }

    /// Counts a PolicyReport someone else edited, deleted or holds our name with.
    pub fn count_report_finding(&self, reason: &str) {
        self.report_findings
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts one reconcile by its result: `ok` or the failed operation.
    pub fn count_reconcile(&self, result: &str) {
        self.reconciles
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    /// Counts one drift item of `kind` found, and repaired if `repaired`.
    pub fn count_drift(&self, kind: Kind, repaired: bool) {
        let labels = KindLabels {
            kind: kind.to_string(),
        };
        self.drift_detected.get_or_create(&labels).inc();
        if repaired {
            self.drift_repaired.get_or_create(&labels).inc();
        }
    }

    /// What the index `cache` reports: its dropped objects (counted by `kind`) and its bytes.
    pub fn cache(&self, kind: Kind, cache: &str) -> IndexMetrics {
        IndexMetrics {
            dropped: self
                .cache_dropped
                .get_or_create(&KindLabels {
                    kind: kind.to_string(),
                })
                .clone(),
            bytes: self
                .cache_bytes
                .get_or_create(&CacheLabels {
                    cache: cache.to_string(),
                })
                .clone(),
        }
    }

    /// Sets the number of `baseline`'s selected namespaces in `state`.
    pub fn set_namespaces(&self, baseline: &str, state: &str, count: i32) {
        self.namespaces
            .get_or_create(&NamespaceStateLabels {
                baseline: baseline.to_string(),
                state: state.to_string(),
            })
            .set(i64::from(count));
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        self.allocator.read();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

/// What the allocator says of the process's memory, read at each scrape.
struct AllocatorMetrics {
    allocated: Gauge,
    resident: Gauge,
}

impl AllocatorMetrics {
    fn registered(r: &mut Registry) -> Self {
        AllocatorMetrics {
            allocated: registered(
                r,
                "memory_allocated_bytes",
                "Bytes the process has allocated and not freed (jemalloc stats.allocated)",
                Gauge::default(),
            ),
            resident: registered(
                r,
                "memory_resident_bytes",
                "Bytes of the allocator's pages resident in memory (jemalloc stats.resident)",
                Gauge::default(),
            ),
        }
    }

    /// Reads the allocator's counters (refreshed by advancing its statistics epoch). Without
    /// jemalloc as the global allocator (in-process tests) they read what jemalloc itself holds.
    fn read(&self) {
        use tikv_jemalloc_ctl::{epoch, stats};
        if epoch::advance().is_err() {
            return;
        }
        if let Ok(allocated) = stats::allocated::read() {
            self.allocated.set(allocated as i64);
        }
        if let Ok(resident) = stats::resident::read() {
            self.resident.set(resident as i64);
        }
    }
}

/// `metric`, registered in `registry` as `name`.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_family_is_exported_at_zero_before_anything_happens() {
        let text = Metrics::new().encode();
        let mut expected = vec!["zerotrust_reconciles_total{result=\"ok\"} 0".to_string()];
        for kind in Kind::GENERATED
            .into_iter()
            .chain([Kind::Namespace, Kind::ServiceAccount])
        {
            for family in ["drift_detected", "drift_repaired"] {
                expected.push(format!("zerotrust_{family}_total{{kind=\"{kind}\"}} 0"));
            }
        }
        expected.push("zerotrust_status_writes_total 0".to_string());
        for sample in expected {
            assert!(
                text.lines().any(|l| l == sample),
                "{sample} missing:\n{text}"
            );
        }
    }
}
