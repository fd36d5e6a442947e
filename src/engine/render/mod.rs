//! (baselines, namespace) -> the objects and labels that namespace must hold.
//!
//! Several baselines compose: each baseline's objects are its own (their names carry the baseline's
//! name). The shared controls (Pod Security labels, the default ServiceAccount's token) are
//! written as Enforce baselines compose them, the strictest winning; every baseline, Enforce or
//! Audit, is also checked on its own against what the namespace holds ([`Requirement`]).

mod network;
mod rbac;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec as K8sLimitRangeSpec, Namespace, ResourceQuota,
    ResourceQuotaSpec as K8sResourceQuotaSpec, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use self::network::network_policies;
use self::rbac::{role_binding, role_object};
use super::exemption::{ExemptControl, Exempted, exempted};
use super::object::{Kind, Object, object_name, owner_labels};
use super::pod_security::{PSA_MODES, PodSecurityPolicy, compose};
use super::select::selects;
use super::validate::ValidBaseline;
use crate::api::{ConflictPolicy, Control, LimitSpec, LimitType, Mode, SecurityBaselineSpec};

/// What a rendering depends on besides the baselines and the namespace: where the operator runs,
/// where the API server answers (for `allowAPIServer`), and the time (exemptions end at theirs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environment {
    pub operator_namespace: String,
    /// The API server's addresses and ports, from the cluster's `kubernetes` Service and its
    /// EndpointSlices; empty while unknown.
    pub api_server: Vec<Endpoint>,
    /// Seconds since the epoch.
    pub now: i64,
}

impl Environment {
    /// An environment with no API server known, at the present moment.
    pub fn new(operator_namespace: &str) -> Environment {
        Environment {
            operator_namespace: operator_namespace.to_string(),
            api_server: Vec::new(),
            now: k8s_openapi::jiff::Timestamp::now().as_second(),
        }
    }
}

/// An address and port at which the API server answers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub address: String,
    pub port: i32,
}

/// A baseline that selects the namespace being rendered, with the settings that steer repair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SelectedBaseline {
    pub name: String,
    pub mode: Mode,
    pub conflict_policy: ConflictPolicy,
    /// The generation rendered (the last valid one, while a newer edit is invalid).
    pub generation: i64,
    /// The baseline's uid (none offline): part of its onboarding marker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// What one baseline asks of the namespace's shared objects, checked on its own in both modes:
/// an Audit baseline reports where the namespace falls short of it, and never writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requirement {
    pub baseline: String,
    /// Pod Security policy by mode (`enforce`, `audit`, `warn`).
    pub pod_security: BTreeMap<String, PodSecurityPolicy>,
    /// The `default` ServiceAccount must not automount its token.
    pub disable_token_automount: bool,
}

/// A generated object and the baseline it belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredObject {
    pub baseline: String,
    pub object: Object,
}

/// A value the operator wants on a shared object (a Namespace label, a ServiceAccount field), and
/// the baseline that asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredValue {
    pub value: String,
    pub baseline: String,
}

/// Everything one namespace must hold under the baselines that select it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DesiredState {
    pub namespace: String,
    /// The baselines that select this namespace, by name.
    pub baselines: Vec<SelectedBaseline>,
    /// Generated objects, ordered by kind then name.
    pub objects: Vec<DesiredObject>,
    /// Pod Security labels written on the Namespace: the Enforce baselines' policies composed,
    /// the strictest winning per mode. Audit baselines never contribute.
    pub namespace_labels: BTreeMap<String, DesiredValue>,
    /// `Some` (the first Enforce baseline asking for it) when the `default` ServiceAccount is to
    /// get `automountServiceAccountToken: false`.
    pub disable_default_token_automount: Option<String>,
    /// What each selecting baseline asks of the shared objects, by baseline name.
    pub requirements: Vec<Requirement>,
    /// Controls exempt here, with the reasons: left out of everything above.
    pub exempt: Vec<ExemptControl>,
}

impl DesiredState {
    pub fn is_empty(&self) -> bool {
        self.baselines.is_empty()
    }

    pub fn baseline(&self, name: &str) -> Option<&SelectedBaseline> {
        self.baselines.iter().find(|b| b.name == name)
    }

    pub fn object(&self, kind: Kind, name: &str) -> Option<&DesiredObject> {
        self.objects
            .iter()
            .find(|d| d.object.kind() == kind && d.object.name() == name)
    }

    /// The partial Namespace the operator applies: only the labels it owns.
    pub fn namespace_patch(&self, labels: BTreeMap<String, String>) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some(self.namespace.clone()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }
    }

    /// The partial `default` ServiceAccount the operator applies: only the automount field.
    pub fn service_account_patch(&self) -> ServiceAccount {
        ServiceAccount {
            metadata: ObjectMeta {
                name: Some("default".to_string()),
                namespace: Some(self.namespace.clone()),
                ..ObjectMeta::default()
            },
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        }
    }

    /// What `render` prints: every object, then the partial Namespace and ServiceAccount, exactly
    /// as the operator would apply them.
    pub fn manifests(&self) -> Vec<serde_json::Value> {
        let mut out: Vec<serde_json::Value> = self
            .objects
            .iter()
            .map(|d| serde_json::to_value(&d.object).expect("k8s objects serialize"))
            .collect();
        if !self.namespace_labels.is_empty() {
            let labels = self
                .namespace_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect();
            out.push(serde_json::to_value(self.namespace_patch(labels)).expect("serializes"));
        }
        if self.disable_default_token_automount.is_some() {
            out.push(serde_json::to_value(self.service_account_patch()).expect("serializes"));
        }
        out
    }
}

/// Renders what `namespace` (with `labels`) must hold under every baseline in `baselines` that
/// selects it. Deterministic: the same input always gives the same output, whatever the order of
/// `baselines`.
pub fn render(
    baselines: &[ValidBaseline],
    namespace: &str,
    labels: &BTreeMap<String, String>,
    env: &Environment,
) -> DesiredState {
    let mut selected: Vec<&ValidBaseline> = baselines
        .iter()
        .filter(|b| selects(b, namespace, labels, &env.operator_namespace))
        .collect();
    selected.sort_by(|a, b| a.name().cmp(b.name()));

    let mut state = DesiredState {
        namespace: namespace.to_string(),
        ..DesiredState::default()
    };
    for baseline in &selected {
        let name = baseline.name();
        let spec = &baseline.baseline.spec;
        state.baselines.push(SelectedBaseline {
            name: name.to_string(),
            mode: spec.mode,
            conflict_policy: spec.conflict_policy,
            generation: baseline.baseline.metadata.generation.unwrap_or(0),
            uid: baseline.baseline.metadata.uid.clone(),
        });
        let exempted = exempted(baseline, namespace, labels, env.now);
        for object in render_objects(name, spec, namespace, &exempted, &env.api_server) {
            state.objects.push(DesiredObject {
                baseline: name.to_string(),
                object,
            });
        }
        let requirement = requirement(baseline, &exempted);
        state.exempt.extend(exempted.why);
        if spec.mode == Mode::Enforce
            && requirement.disable_token_automount
            && state.disable_default_token_automount.is_none()
        {
            state.disable_default_token_automount = Some(name.to_string());
        }
        state.requirements.push(requirement);
    }
    state.objects.sort_by(|a, b| {
        (a.object.kind(), a.object.name()).cmp(&(b.object.kind(), b.object.name()))
    });
    let enforced: Vec<&Requirement> = state
        .requirements
        .iter()
        .zip(&state.baselines)
        .filter(|(_, b)| b.mode == Mode::Enforce)
        .map(|(r, _)| r)
        .collect();
    state.namespace_labels = compose_pod_security(&enforced);
    state
}

/// What `baseline` asks of a namespace's shared objects, less what is exempt there.
fn requirement(baseline: &ValidBaseline, exempted: &Exempted) -> Requirement {
    let spec = &baseline.baseline.spec;
    let version = spec.pod_security_version();
    let pod_security = spec
        .pod_security
        .iter()
        .filter(|_| !exempted.control(Control::PodSecurity))
        .flat_map(|psa| {
            [
                ("enforce", psa.enforce),
                ("audit", psa.audit),
                ("warn", psa.warn),
            ]
            .into_iter()
            .filter_map(|(mode, level)| {
                let policy = PodSecurityPolicy {
                    level: level?,
                    version: version.to_string(),
                };
                Some((mode.to_string(), policy))
            })
        })
        .collect();
    Requirement {
        baseline: baseline.name().to_string(),
        pod_security,
        disable_token_automount: !exempted.control(Control::ServiceAccount)
            && spec
                .service_accounts
                .as_ref()
                .and_then(|s| s.automount_default_token)
                == Some(false),
    }
}

pub(super) fn metadata(baseline: &str, namespace: &str, suffix: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(object_name(baseline, suffix)),
        namespace: Some(namespace.to_string()),
        labels: Some(owner_labels(baseline)),
        ..ObjectMeta::default()
    }
}

/// The objects `baseline` puts into `namespace`, less the exempt ones.
pub(super) fn render_objects(
    baseline: &str,
    spec: &SecurityBaselineSpec,
    namespace: &str,
    exempted: &Exempted,
    api_server: &[Endpoint],
) -> Vec<Object> {
    let mut objects = Vec::new();
    if let Some(np) = &spec.network_policy
        && !exempted.control(Control::NetworkPolicy)
    {
        objects.extend(
            network_policies(baseline, np, namespace, api_server).map(Object::NetworkPolicy),
        );
    }
    for role in spec.rbac.iter().flat_map(|r| &r.roles) {
        if exempted.role(&role.name) {
            continue;
        }
        objects.push(Object::Role(role_object(baseline, role, namespace)));
        objects.push(Object::RoleBinding(role_binding(baseline, role, namespace)));
    }
    if let Some(quota) = spec
        .resource_quota
        .as_ref()
        .filter(|_| !exempted.control(Control::ResourceQuota))
    {
        objects.push(Object::ResourceQuota(ResourceQuota {
            metadata: metadata(baseline, namespace, "quota"),
            spec: Some(K8sResourceQuotaSpec {
                hard: Some(quantities(&quota.hard)),
                ..K8sResourceQuotaSpec::default()
            }),
            status: None,
        }));
    }
    if let Some(limits) = spec
        .limit_range
        .as_ref()
        .filter(|_| !exempted.control(Control::LimitRange))
    {
        objects.push(Object::LimitRange(LimitRange {
            metadata: metadata(baseline, namespace, "limits"),
            spec: Some(K8sLimitRangeSpec {
                limits: limits.limits.iter().map(limit_item).collect(),
            }),
        }));
    }
    objects
}

fn quantities(map: &BTreeMap<String, String>) -> BTreeMap<String, Quantity> {
    map.iter()
        .map(|(k, v)| (k.clone(), Quantity(v.clone())))
        .collect()
}

fn optional_quantities(map: &BTreeMap<String, String>) -> Option<BTreeMap<String, Quantity>> {
    (!map.is_empty()).then(|| quantities(map))
}

/// A LimitRange item as the API server stores it: for `Container` items it fills in what was left
/// out (Kubernetes' SetDefaults_LimitRangeItem), so rendering the same here keeps the preview
/// honest and keeps `diff` from seeing those filled-in values as drift.
fn limit_item(item: &LimitSpec) -> LimitRangeItem {
    let mut default = item.default.clone();
    let mut default_request = item.default_request.clone();
    if item.type_ == LimitType::Container {
        // An unset default limit is the max; an unset default request is the default limit,
        // else the min.
        for (resource, max) in &item.max {
            default
                .entry(resource.clone())
                .or_insert_with(|| max.clone());
        }
        for (resource, value) in default.iter().chain(&item.min) {
            default_request
                .entry(resource.clone())
                .or_insert_with(|| value.clone());
        }
    }
    LimitRangeItem {
        type_: item.type_.as_str().to_string(),
        default: optional_quantities(&default),
        default_request: optional_quantities(&default_request),
        max: optional_quantities(&item.max),
        min: optional_quantities(&item.min),
        max_limit_request_ratio: optional_quantities(&item.max_limit_request_ratio),
    }
}

/// The PSA labels one baseline sets on the namespaces it selects, on its own.
pub fn pod_security_labels(baseline: &ValidBaseline) -> BTreeMap<String, String> {
    compose_pod_security(&[&requirement(baseline, &Exempted::default())])
        .into_iter()
        .map(|(k, v)| (k, v.value))
        .collect()
}

/// For each PSA mode, the composition of what `requirements` ask for: the strictest level at the
/// newest version, each label attributed to the baseline asking for it.
fn compose_pod_security(requirements: &[&Requirement]) -> BTreeMap<String, DesiredValue> {
    let mut labels = BTreeMap::new();
    for mode in PSA_MODES {
        let composed = compose(
            requirements
                .iter()
                .filter_map(|r| Some((r.pod_security.get(mode)?, r.baseline.as_str()))),
        );
        if let Some(composed) = composed {
            let [level, version] = composed.policy.labels(mode);
            for ((key, value), baseline) in [
                (level, composed.level_from),
                (version, composed.version_from),
            ] {
                let baseline = baseline.to_string();
                labels.insert(key, DesiredValue { value, baseline });
            }
        }
    }
    labels
}
