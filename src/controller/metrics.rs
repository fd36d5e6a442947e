//! Prometheus metrics: what the operator did, how long it took, and what state namespaces are in.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// ok, or the error's metric label.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceStateLabels {
    pub baseline: String,
    /// compliant, drifted or pending.
    pub state: String,
}

/// Every metric the operator exports, registered under the `zerotrust` prefix.
pub struct Metrics {
    pub reconciles: Family<ResultLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub namespaces: Family<NamespaceStateLabels, Gauge>,
    pub drift_detected: Family<KindLabels, Counter>,
    pub drift_repaired: Family<KindLabels, Counter>,
    pub onboarding_latency: Histogram,
    pub leader: Gauge,
    pub status_writes: Counter,
    registry: Registry,
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
        Metrics {
            reconciles,
            reconcile_duration,
            namespaces,
            drift_detected,
            drift_repaired,
            onboarding_latency,
            leader,
            status_writes,
            registry,
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
