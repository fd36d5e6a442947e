//! Prometheus metrics: what the operator did, how long it took, and what state namespaces are in.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::index::IndexMetrics;
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
    cache_bytes: Family<CacheLabels, Gauge>,
    memory_allocated: Gauge,
    memory_resident: Gauge,
    registry: Registry,
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
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Namespace reconciles by result",
            reconciles.clone(),
        );
        // 1 ms .. ~16 s
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "reconcile_duration_seconds",
            "Time to reconcile one namespace",
            reconcile_duration.clone(),
        );
        let namespaces = Family::<NamespaceStateLabels, Gauge>::default();
        registry.register(
            "namespaces",
            "Selected namespaces per baseline by state",
            namespaces.clone(),
        );
        let drift_detected = Family::<KindLabels, Counter>::default();
        registry.register(
            "drift_detected",
            "Drift items found, by kind",
            drift_detected.clone(),
        );
        let drift_repaired = Family::<KindLabels, Counter>::default();
        registry.register(
            "drift_repaired",
            "Drift items repaired, by kind",
            drift_repaired.clone(),
        );
        // 10 ms .. ~160 s
        let onboarding_latency = Histogram::new(exponential_buckets(0.01, 2.0, 15));
        registry.register(
            "onboarding_latency_seconds",
            "From namespace creation to its first compliant reconcile",
            onboarding_latency.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this process holds the leader lease",
            leader.clone(),
        );
        let status_writes = Counter::default();
        registry.register(
            "status_writes",
            "SecurityBaseline status writes",
            status_writes.clone(),
        );
        let cache_dropped = Family::<KindLabels, Counter>::default();
        registry.register(
            "cache_dropped_objects",
            "Watched objects the caches could not hold or read back (each is also logged)",
            cache_dropped.clone(),
        );
        let cache_bytes = Family::<CacheLabels, Gauge>::default();
        registry.register(
            "cache_bytes",
            "Bytes of object JSON the caches hold, by cache",
            cache_bytes.clone(),
        );
        let memory_allocated = Gauge::default();
        registry.register(
            "memory_allocated_bytes",
            "Bytes the process has allocated and not freed (jemalloc stats.allocated)",
            memory_allocated.clone(),
        );
        let memory_resident = Gauge::default();
        registry.register(
            "memory_resident_bytes",
            "Bytes of the allocator's pages resident in memory (jemalloc stats.resident)",
            memory_resident.clone(),
        );
        // Every counter family has its series from the first scrape, at zero, so `rate()` and
        // `absent()` in dashboards and alerts work before the first reconcile or drift.
        reconciles.get_or_create_owned(&ResultLabels {
            result: "ok".to_string(),
        });
        let drift_kinds = Kind::GENERATED
            .into_iter()
            .chain([Kind::Namespace, Kind::ServiceAccount]);
        for kind in drift_kinds {
            let labels = KindLabels {
                kind: kind.to_string(),
            };
            drift_detected.get_or_create_owned(&labels);
            drift_repaired.get_or_create_owned(&labels);
        }
        Metrics {
            reconciles,
            reconcile_duration,
            namespaces,
            drift_detected,
            drift_repaired,
            onboarding_latency,
            leader,
            status_writes,
            cache_dropped,
            cache_bytes,
            memory_allocated,
            memory_resident,
            registry,
        }
    }

    /// Starts timing a reconcile; the time is recorded when the guard drops.
    pub fn time_reconcile(&self) -> ReconcileTimer {
        ReconcileTimer {
            histogram: self.reconcile_duration.clone(),
            start: std::time::Instant::now(),
        }
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
        self.read_allocator();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

impl Metrics {
    /// Reads the allocator's counters (refreshed by advancing its statistics epoch). Without
    /// jemalloc as the global allocator (in-process tests) they read what jemalloc itself holds.
    fn read_allocator(&self) {
        use tikv_jemalloc_ctl::{epoch, stats};
        if epoch::advance().is_err() {
            return;
        }
        if let Ok(allocated) = stats::allocated::read() {
            self.memory_allocated.set(allocated as i64);
        }
        if let Ok(resident) = stats::resident::read() {
            self.memory_resident.set(resident as i64);
        }
    }
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
