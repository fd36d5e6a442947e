//! What a benchmark run found: latency summaries, the results table and its JSON form, each figure
//! beside its target.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use zerotrust_testkit::audit::Requests;

/// p50 / p99 / max of a set of samples, in milliseconds.
#[derive(Debug, Default, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(samples: &[Duration]) -> Latency {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        // Nearest-rank percentiles: with few samples p99 is the maximum, as it should be.
        let rank = |p: f64| {
            if ms.is_empty() {
                return 0.0;
            }
            let index = ((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1;
            ms[index]
        };
        Latency {
            samples: ms.len(),
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: ms.last().copied().unwrap_or(0.0),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub namespaces: usize,
    pub concurrency: usize,
    pub objects_per_namespace: usize,
    pub bulk_operator_s: f64,
    pub bulk_raw_writer_s: f64,
    pub bulk_ratio: f64,
    /// The operator's requests while converging the bulk set, by verb.
    pub bulk_requests: Requests,
    pub onboarding: Latency,
    /// Of each onboarding sample, creation to the controller-manager's default ServiceAccount
    /// as the tracker sees it (the operator's last write waits for it).
    pub onboarding_service_account: Latency,
    /// Of each onboarding sample, the default ServiceAccount's arrival to compliant.
    pub onboarding_after_service_account: Latency,
    /// Namespace creation to the first pod the API server admits (the onboarding gate open).
    pub gate_open: Latency,
    pub repair: Latency,
    /// The repair latency per kind of edit (`DeletePolicy`, `AddAllowRule`, ...), so a peer
    /// measured on one kind is compared with the same kind.
    pub repair_by_edit: BTreeMap<String, Latency>,
    pub idle_seconds: u64,
    /// The operator's requests over the idle window, by verb.
    pub idle_requests: Requests,
    pub idle_writes: u64,
    pub rss_peak_mib: f64,
    pub rss_steady_mib: f64,
    pub status_bytes: usize,
    pub baseline_object_bytes: usize,
    /// Large objects labelled like ours in a tenant's namespace (`--inflation-objects`).
    pub inflation: Option<Inflation>,
    /// What the operator's own gauges say it holds, at the end of the idle window.
    pub memory: MemoryBreakdown,
    /// A new process over everything the run left (`--startup`).
    pub startup: Option<Startup>,
}

/// The operator's memory gauges, in MiB: resident and allocated as the allocator sees them, and
/// the estimated bytes each cache holds.
#[derive(Debug, Default, Serialize)]
pub struct MemoryBreakdown {
    pub resident_mib: f64,
    pub allocated_mib: f64,
    pub caches_mib: BTreeMap<String, f64>,
}

/// A process started after the run: how long until it is ready and has reconciled every
/// namespace once, and its memory then (no bulk writes behind it).
#[derive(Debug, Default, Serialize)]
pub struct Startup {
    pub namespaces: usize,
    pub ready_s: f64,
    pub first_pass_s: f64,
    pub rss_peak_mib: f64,
    pub rss_mib: f64,
    pub memory: MemoryBreakdown,
}

/// What the operator's memory did while a tenant created large objects labelled like ours.
#[derive(Debug, Default, Serialize)]
pub struct Inflation {
    pub objects: usize,
    pub object_kib: usize,
    pub rss_before_mib: f64,
    pub rss_after_mib: f64,
    /// The process's peak RSS over the whole run, up to the end of this scenario.
    pub rss_peak_mib: f64,
    /// Namespaces onboarded while the objects arrived.
    pub onboarding: Latency,
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn verbs(requests: &Requests) -> String {
    requests
        .iter()
        .map(|(verb, n)| format!("{verb} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Report {
    /// What makes the run fail, whatever the machine: idle writes, a status over 8 KiB, and
    /// onboarding or repair p99 over the given bounds (in milliseconds).
    pub fn gate(&self, onboarding_p99_ms: f64, repair_p99_ms: f64) -> Vec<String> {
        let mut failed = Vec::new();
        if self.idle_writes > 0 {
            failed.push(format!(
                "{} writes while idle: {:?}",
                self.idle_writes, self.idle_requests
            ));
        }
        if self.status_bytes > 8192 {
            failed.push(format!("status of {} B, over 8 KiB", self.status_bytes));
        }
        if self.onboarding.p99_ms > onboarding_p99_ms {
            failed.push(format!(
                "onboarding p99 {:.0} ms, over {onboarding_p99_ms} ms",
                self.onboarding.p99_ms
            ));
        }
        if self.repair.p99_ms > repair_p99_ms {
            failed.push(format!(
                "repair p99 {:.0} ms, over {repair_p99_ms} ms",
                self.repair.p99_ms
            ));
        }
        failed
    }

    /// The results as a Markdown table, each figure next to its target.
    pub fn table(&self) -> String {
        let large = self.namespaces >= 10_000;
        let rss_target = if large { 128.0 } else { 64.0 };
        let lat = |l: &Latency| {
            format!(
                "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} samples)",
                l.p50_ms, l.p99_ms, l.max_ms, l.samples
            )
        };
        let rows: Vec<(String, String, String, &str)> = vec![
            (
                "bulk convergence: operator".into(),
                format!("{:.1} s", self.bulk_operator_s),
                String::new(),
                "",
            ),
            (
                "bulk convergence: raw writer".into(),
                format!("{:.1} s", self.bulk_raw_writer_s),
                String::new(),
                "",
            ),
            (
                "bulk convergence: ratio".into(),
                if self.bulk_raw_writer_s > 0.0 {
                    format!("{:.2}x", self.bulk_ratio)
                } else {
                    "raw writer not run".into()
                },
                "<= 1.3x".into(),
                if self.bulk_raw_writer_s > 0.0 {
                    verdict(self.bulk_ratio <= 1.3)
                } else {
                    ""
                },
            ),
            (
                "bulk: operator requests".into(),
                verbs(&self.bulk_requests),
                String::new(),
                "",
            ),
            (
                "onboarding latency".into(),
                lat(&self.onboarding),
                "p99 <= 250 ms".into(),
                verdict(self.onboarding.p99_ms <= 250.0),
            ),
            (
                "onboarding: creation to the default ServiceAccount (controller-manager)".into(),
                lat(&self.onboarding_service_account),
                String::new(),
                "",
            ),
            (
                "onboarding: the default ServiceAccount to compliant".into(),
                lat(&self.onboarding_after_service_account),
                String::new(),
                "",
            ),
            (
                "gate-open latency (creation to first pod admitted)".into(),
                lat(&self.gate_open),
                String::new(),
                "",
            ),
            (
                "drift repair latency".into(),
                lat(&self.repair),
                "p99 <= 500 ms".into(),
                verdict(self.repair.p99_ms <= 500.0),
            ),
            (
                format!("idle requests ({} s)", self.idle_seconds),
                verbs(&self.idle_requests),
                String::new(),
                "",
            ),
            (
                "idle writes".into(),
                self.idle_writes.to_string(),
                "0".into(),
                verdict(self.idle_writes == 0),
            ),
            (
                "operator RSS: peak".into(),
                format!("{:.1} MiB", self.rss_peak_mib),
                format!("<= {rss_target} MiB"),
                verdict(self.rss_peak_mib <= rss_target),
            ),
            (
                "operator RSS: steady".into(),
                format!("{:.1} MiB", self.rss_steady_mib),
                format!("<= {rss_target} MiB"),
                verdict(self.rss_steady_mib <= rss_target),
            ),
            (
                "status size".into(),
                format!(
                    "{} B (whole baseline {} B)",
                    self.status_bytes, self.baseline_object_bytes
                ),
                "<= 8 KiB".into(),
                verdict(self.status_bytes <= 8192),
            ),
        ];
        let mut rows = rows;
        if let Some(i) = &self.inflation {
            let growth = i.rss_after_mib - i.rss_before_mib;
            rows.push((
                format!(
                    "RSS growth: {} objects of {} KiB labelled like ours",
                    i.objects, i.object_kib
                ),
                format!(
                    "{growth:.1} MiB ({:.1} -> {:.1} MiB)",
                    i.rss_before_mib, i.rss_after_mib
                ),
                "< 16 MiB".into(),
                verdict(growth < 16.0),
            ));
            rows.push((
                "onboarding meanwhile".into(),
                lat(&i.onboarding),
                String::new(),
                "",
            ));
        }
        let breakdown = |m: &MemoryBreakdown| {
            let caches: f64 = m.caches_mib.values().sum();
            let each = m
                .caches_mib
                .iter()
                .map(|(cache, mib)| format!("{cache} {mib:.1}"))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "resident {:.1} MiB, allocated {:.1} MiB, caches {caches:.1} MiB ({each})",
                m.resident_mib, m.allocated_mib
            )
        };
        rows.push((
            "operator memory gauges (end of idle)".into(),
            breakdown(&self.memory),
            String::new(),
            "",
        ));
        if let Some(s) = &self.startup {
            rows.push((
                format!("start-up over {} namespaces", s.namespaces),
                format!(
                    "ready {:.1} s, first full pass {:.1} s",
                    s.ready_s, s.first_pass_s
                ),
                String::new(),
                "",
            ));
            rows.push((
                "after start-up: RSS peak / now, gauges".into(),
                format!(
                    "{:.1} / {:.1} MiB; {}",
                    s.rss_peak_mib,
                    s.rss_mib,
                    breakdown(&s.memory)
                ),
                format!("<= {rss_target} MiB"),
                verdict(s.rss_peak_mib <= rss_target),
            ));
        }
        let mut out = format!(
            "{} namespaces, {} objects + PSA labels + default ServiceAccount each, concurrency {}\n\n",
            self.namespaces, self.objects_per_namespace, self.concurrency
        );
        out.push_str("| scenario | result | target | |\n|---|---|---|---|\n");
        for (scenario, result, target, verdict) in rows {
            out.push_str(&format!(
                "| {scenario} | {result} | {target} | {verdict} |\n"
            ));
        }
        out
    }
}
