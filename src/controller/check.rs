//! `check`: one read-only pass over the cluster with the operator's own engine, for CI pipelines
//! and people who want an answer without running the operator.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::apply;
use super::caches::{CachedSummary, Caches};
use super::decode::decode;
use super::discovery::{AdmissionIdentity, admission_settings};
use super::enforced::LastValid;
use super::error::{Error, Failed, Operation};
use super::held_namespace::HeldNamespace;
use super::held_object::strip_metadata;
use super::metrics::Metrics;
use super::report_check::{FalseReport, false_reports};
use crate::api::{AdmissionIdentityRecord, SecurityBaseline};
use crate::engine::{
    AdmissionSettings, ControlResult, DesiredObject, Drift, DriftReason, Environment,
    ExemptControl, InvalidSpec, Kind, MANAGED_SELECTOR, Object, PermanentExemption, TrustedName,
    ValidBaseline, admission_results, diff, diff_admission, permanent_exemptions, render,
    render_admission, results, unavailable, unclaimed_names,
};

/// What `check` found.
#[derive(Debug, Default)]
pub struct Report {
    /// Drift per namespace, in namespace order.
    pub drift: Vec<(String, Drift)>,
    /// Namespaces checked (selected by at least one baseline).
    pub namespaces: usize,
    /// Baselines the API server accepted but the engine refuses.
    pub invalid: Vec<InvalidSpec>,
    /// Of those, the ones checked at the last valid generation the operator recorded (which it
    /// enforces meanwhile): (baseline, generation).
    pub enforcing_recorded: Vec<(String, i64)>,
    /// Baselines whose status records no identity the operator rendered their admission policies
    /// for: checked as rendered for the identity given to `check`.
    pub identity_unrecorded: Vec<String>,
    /// Baselines checked, valid or not.
    pub baselines: usize,
    /// Their names, in the order listed.
    pub baseline_names: Vec<String>,
    /// Drift of the baselines' cluster-scoped admission policies.
    pub admission: Vec<Drift>,
    /// One result per baseline for its admission policies: pass, or fail with that drift.
    pub admission_results: Vec<ControlResult>,
    /// Protections a baseline asks for that this API server cannot carry: (baseline, protection).
    pub unavailable: Vec<(String, &'static str)>,
    /// Controls exempt per namespace, in namespace order: neither compliant nor drift.
    pub exempt: Vec<(String, ExemptControl)>,
    /// One result per namespace, baseline and control, in namespace order: the same results
    /// the operator's PolicyReports hold.
    pub controls: Vec<(String, ControlResult)>,
    /// The valid baselines' exemptions without end: listed, never a failure.
    pub permanent: Vec<PermanentExemption>,
    /// Namespaces a baseline trusts by name that do not exist: (baseline, name). A warning: it
    /// does not fail the check.
    pub unclaimed: Vec<(String, TrustedName)>,
    /// Reports named `zerotrust-operator` that show other results (checked without `--baseline`
    /// only: a report holds every baseline's results).
    pub false_reports: Vec<FalseReport>,
}

async fn list<K>(api: Api<K>, params: &ListParams, kind: &'static str) -> Result<Vec<K>, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut items = api
        .list(params)
        .await
        .failed(Operation::List, kind, "", "")?
        .items;
    for item in &mut items {
        strip_metadata(item.meta_mut(), false);
    }
    Ok(items)
}

/// Compares every selected namespace, and every baseline's admission policies, with the baselines
/// (only `only`, if given), the policies as rendered for `identity`. Writes nothing.
pub async fn check(
    client: &Client,
    only: Option<&str>,
    operator_namespace: &str,
    identity: &AdmissionIdentity,
) -> Result<Report, Error> {
    let caches = Caches::new(&Metrics::new(), &[]);
    let admission = admission_settings(client, identity, operator_namespace).await?;
    load_caches(client, &caches).await?;
    let mut report = Report::default();
    let (valid, identities) = read_baselines(client, only, &mut report).await?;
    report.identity_unrecorded = valid
        .iter()
        .filter(|b| matches!(identities.get(b.name()), Some(None)))
        .map(|b| b.name().to_string())
        .collect();
    // One moment for the whole check, so every exemption is in force or over throughout.
    let env = Environment {
        api_server: super::api_server::read(client).await?,
        ..Environment::new(operator_namespace)
    };
    (report.admission, report.admission_results) =
        check_admission(client, &valid, &identities, &admission, env.now).await?;
    report.unavailable = valid
        .iter()
        .flat_map(|b| {
            unavailable(b, &admission)
                .into_iter()
                .map(|p| (b.name().to_string(), p))
        })
        .collect();
    report.permanent = valid.iter().flat_map(permanent_exemptions).collect();
    check_namespaces(client, &caches, &valid, &env, &mut report).await?;
    if only.is_none() {
        report.false_reports = false_reports(client, &report.controls, &report.unclaimed).await?;
    }
    Ok(report)
}

/// Fills `caches` as the operator's watches would: our labelled objects, every NetworkPolicy
/// (summarised), and the `default` ServiceAccounts.
async fn load_caches(client: &Client, caches: &Caches) -> Result<(), Error> {
    let managed = ListParams::default().labels(MANAGED_SELECTOR);
    for kind in Kind::GENERATED {
        let api = Api::<DynamicObject>::all_with(client.clone(), &kind.api_resource());
        let objects = list(api, &managed, kind.as_str()).await?;
        caches.generated(kind).load(objects);
    }
    let every = ListParams::default();
    let policies = list(
        Api::<NetworkPolicy>::all(client.clone()),
        &every,
        "NetworkPolicy",
    )
    .await?;
    caches
        .network_policies()
        .load(policies.iter().map(CachedSummary::of));
    let defaults = ListParams::default().fields("metadata.name=default");
    let accounts = list(
        Api::<ServiceAccount>::all(client.clone()),
        &defaults,
        "ServiceAccount",
    );
    caches.service_accounts().load(accounts.await?);
    Ok(())
}

/// The baselines that pass validation (only `only`, if given), with the identity recorded for
/// each; each one listed is counted in `report`, and each one refused is reported there as
/// invalid, and checked at the last valid generation recorded in its status, as the operator
/// enforces it.
async fn read_baselines(
    client: &Client,
    only: Option<&str>,
    report: &mut Report,
) -> Result<(Vec<ValidBaseline>, Identities), Error> {
    let mut valid = Vec::new();
    let mut identities = Identities::new();
    // One by one, as the operator reads them: a baseline that does not decode is reported as
    // invalid rather than failing the whole check.
    let raw: Api<DynamicObject> =
        Api::all_with(client.clone(), &ApiResource::erase::<SecurityBaseline>(&()));
    for object in list(raw, &ListParams::default(), "SecurityBaseline").await? {
        if only.is_some_and(|name| object.name_any() != name) {
            continue;
        }
        report.baselines += 1;
        report.baseline_names.push(object.name_any());
        let baseline = decode(&object).unwrap_or_else(|undecodable| undecodable.placeholder);
        let recorded = baseline
            .status
            .as_ref()
            .and_then(|s| s.admission_identity.clone());
        identities.insert(baseline.name_any(), recorded);
        let enforced = LastValid::default().enforced(&baseline);
        let generation = enforced.generation();
        if let Some(invalid) = enforced.invalid {
            report.invalid.push(invalid);
            if let Some(generation) = generation {
                report
                    .enforcing_recorded
                    .push((baseline.name_any(), generation));
            }
        }
        valid.extend(enforced.valid);
    }
    Ok((valid, identities))
}

/// The identity each baseline's status records its admission policies were rendered for.
type Identities = BTreeMap<String, Option<AdmissionIdentityRecord>>;

/// `settings` for the identity recorded for `baseline`, if one is.
fn settings_for(
    settings: &AdmissionSettings,
    baseline: &str,
    identities: &Identities,
) -> AdmissionSettings {
    let mut settings = settings.clone();
    if let Some(Some(recorded)) = identities.get(baseline) {
        settings.operator_user = recorded.operator_user.clone();
        settings.break_glass_group = recorded.break_glass_group.clone();
    }
    settings
}

/// Compares each namespace the `valid` baselines select with what they render for it, in
/// namespace order, into `report`.
async fn check_namespaces(
    client: &Client,
    caches: &Caches,
    valid: &[ValidBaseline],
    env: &Environment,
    report: &mut Report,
) -> Result<(), Error> {
    let namespaces = Api::<HeldNamespace>::all(client.clone());
    let mut namespaces = list(namespaces, &ListParams::default(), "Namespace").await?;
    namespaces.sort_by_key(|ns| ns.name_any());
    let exists = |n: &str| {
        namespaces
            .binary_search_by(|ns| ns.name_any().as_str().cmp(n))
            .is_ok()
    };
    for baseline in valid {
        let unclaimed = unclaimed_names(&baseline.baseline.spec, exists);
        let name = baseline.name().to_string();
        report
            .unclaimed
            .extend(unclaimed.into_iter().map(|t| (name.clone(), t)));
    }
    for namespace in namespaces
        .iter()
        .filter(|ns| ns.metadata.deletion_timestamp.is_none())
    {
        let name = namespace.name_any();
        let desired = render(valid, &name, namespace.labels(), env);
        if desired.is_empty() {
            continue;
        }
        report.namespaces += 1;
        report
            .exempt
            .extend(desired.exempt.iter().map(|e| (name.clone(), e.clone())));
        let drift = diff(&desired, &caches.live_state(namespace));
        let found = classify_missing(client, caches, &name, drift).await?;
        let controls = results(&desired, &found);
        report
            .controls
            .extend(controls.into_iter().map(|r| (name.clone(), r)));
        report
            .drift
            .extend(found.into_iter().map(|d| (name.clone(), d)));
    }
    Ok(())
}

/// Our caches see only labelled objects, so a "missing" object may be someone else's, or ours
/// with its labels taken off: each is looked up, and its reason says which.
async fn classify_missing(
    client: &Client,
    caches: &Caches,
    namespace: &str,
    drift: Vec<Drift>,
) -> Result<Vec<Drift>, Error> {
    let mut found = Vec::new();
    for mut d in drift {
        if d.reason == DriftReason::Missing
            && !matches!(d.kind, Kind::Namespace | Kind::ServiceAccount)
            && let Some(found) = apply::get(client, namespace, d.kind, &d.name).await?
        {
            // One read has no memory of uids: ours is what still has our field manager.
            d.reason = caches.found_reason(namespace, &found);
        }
        found.push(d);
    }
    Ok(found)
}

/// The drift of the admission policies of `baselines` (only theirs: a check of one baseline does
/// not report another's objects as stale), and one result per baseline from it.
async fn check_admission(
    client: &Client,
    baselines: &[ValidBaseline],
    identities: &Identities,
    settings: &AdmissionSettings,
    now: i64,
) -> Result<(Vec<Drift>, Vec<ControlResult>), Error> {
    let desired: Vec<DesiredObject> = baselines
        .iter()
        .flat_map(|b| {
            // Each as the operator rendered it: for the identity its status records.
            render_admission(b, &settings_for(settings, b.name(), identities), now)
                .into_iter()
                .map(|object| DesiredObject {
                    baseline: b.name().to_string(),
                    object,
                })
        })
        .collect();
    let managed = ListParams::default().labels(MANAGED_SELECTOR);
    let mut live = Vec::new();
    for kind in Kind::ADMISSION {
        let served = match kind {
            Kind::MutatingAdmissionPolicy | Kind::MutatingAdmissionPolicyBinding => {
                settings.mutating
            }
            _ => settings.validating,
        };
        if !served {
            continue;
        }
        let api = Api::<DynamicObject>::all_with(client.clone(), &kind.api_resource());
        for object in list(api, &managed, kind.as_str()).await? {
            let json = serde_json::to_vec(&object).unwrap_or_default();
            if let Ok(object) = Object::from_json(kind, &json) {
                live.push(object);
            }
        }
    }
    let names: Vec<&str> = baselines.iter().map(|b| b.name()).collect();
    let drift: Vec<Drift> = diff_admission(&desired, &live)
        .into_iter()
        .filter(|d| names.contains(&d.baseline.as_str()))
        .collect();
    let results = admission_results(&desired, &drift);
    Ok((drift, results))
}
