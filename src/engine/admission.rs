//! (baseline, who the operator is) -> the admission policies through which the API server itself
//! refuses what the baseline forbids: CEL evaluated in-process, no webhook, nothing of ours on the
//! request path that can be down.
//!
//! Per Enforce baseline: a MutatingAdmissionPolicy that sets its Pod Security labels on a Namespace
//! as it is created or updated into the selector (so a pod sent right behind its namespace meets
//! them), and an onboarding gate refusing pods in a namespace created after the baseline until the
//! operator has marked it onboarded. In both modes: tamper protection of what the baseline owns
//! (Deny in Enforce, Warn and Audit in Audit), and, on request, refusal of tenant NetworkPolicies
//! that open what the default-deny closes. The CEL is rendered for each baseline rather than
//! interpreting its spec at admission time: what `render` prints is exactly what the API server
//! evaluates, and each expression stays small.

use std::collections::BTreeSet;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use super::exemption::{Exempted, cel, exempt_cel};
use super::object::{
    BASELINE_LABEL, FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE, Object, owner_labels,
};
use super::render::{PSA_LABEL_PREFIX, object_name, render_objects};
use super::select::ALWAYS_EXCLUDED;
use super::validate::{PSA_VERSION_FLOOR, ValidBaseline};
use super::widening::{Opening, Peer, summarize};
use crate::api::{Control, Mode, PodSecurityLevel};

/// Prefix of the label the operator sets on a Namespace once a baseline's controls are in place:
/// `onboarded.zerotrust.dev/<baseline>: "true"`. Only the operator may set or change it.
pub const ONBOARDED_LABEL_PREFIX: &str = "onboarded.zerotrust.dev/";

/// The onboarding marker of `baseline`.
pub fn onboarded_label(baseline: &str) -> String {
    format!("{ONBOARDED_LABEL_PREFIX}{baseline}")
}

/// Who the policies let through, and what the API server serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionSettings {
    /// The operator's user name as the API server authenticates it: the one identity that may
    /// change what a baseline owns.
    pub operator_user: String,
    /// Members of this group may change it too, on purpose (break-glass); the API server's audit
    /// log records them as it records everyone.
    pub break_glass_group: String,
    /// The operator's namespace, which no binding ever selects.
    pub operator_namespace: String,
    /// ValidatingAdmissionPolicy is served (Kubernetes 1.30+).
    pub validating: bool,
    /// MutatingAdmissionPolicy is served (Kubernetes 1.36+, on by default).
    pub mutating: bool,
}

/// The protections a baseline asks for that the API server cannot carry, by name.
pub fn unavailable(baseline: &ValidBaseline, settings: &AdmissionSettings) -> Vec<&'static str> {
    let spec = &baseline.baseline.spec;
    let enforce = spec.mode == Mode::Enforce;
    let mut off = Vec::new();
    if enforce && spec.pod_security.is_some() && !settings.mutating {
        off.push("pod-security-at-creation");
    }
    if !settings.validating {
        if enforce {
            off.push("onboarding-gate");
        }
        off.push("tamper-protection");
        if refuses_widening(baseline) {
            off.push("network-policy-refusal");
        }
    }
    off
}

fn refuses_widening(baseline: &ValidBaseline) -> bool {
    baseline
        .baseline
        .spec
        .network_policy
        .as_ref()
        .is_some_and(|np| np.refuse_widening && !np.default_deny.is_empty())
}

/// The admission policies and bindings of `baseline`, cluster-scoped, honouring the exemptions
/// in force at `now` (seconds since the epoch): rendered again when one expires.
pub fn render_admission(
    baseline: &ValidBaseline,
    settings: &AdmissionSettings,
    now: i64,
) -> Vec<Object> {
    let spec = &baseline.baseline.spec;
    let enforce = spec.mode == Mode::Enforce;
    let mut objects = Vec::new();
    if enforce && settings.mutating && spec.pod_security.is_some() {
        objects.extend(pod_security_at_creation(baseline, settings, now));
    }
    if settings.validating {
        if enforce {
            objects.extend(onboarding_gate(baseline, settings));
        }
        objects.extend(tamper_protection(baseline, settings, now));
        if refuses_widening(baseline) {
            objects.extend(network_policy_refusal(baseline, settings, now));
        }
    }
    objects
}

/// Checks an admission object before it is written, whatever rendered it: ours by name and
/// labels, and unable to reach beyond what a baseline governs. A binding must exclude the
/// cluster's own namespaces and the operator's (so no bug can refuse requests there), a mutating
/// policy may only touch Namespaces, a validating one only the kinds a baseline owns and pods.
pub fn vet(object: &Object, settings: &AdmissionSettings) -> Result<(), String> {
    let meta = object.meta();
    let name = meta.name.as_deref().unwrap_or_default();
    let labels = meta.labels.clone().unwrap_or_default();
    if !name.starts_with("zt-")
        || labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY_VALUE)
        || !labels.contains_key(BASELINE_LABEL)
    {
        return Err(format!("{name}: not named and labelled as ours"));
    }
    let must_exclude: Vec<&str> = ALWAYS_EXCLUDED
        .iter()
        .copied()
        .chain([settings.operator_namespace.as_str()])
        .collect();
    let excludes = |selector: Option<&LabelSelector>| {
        selector
            .and_then(|s| s.match_expressions.as_ref())
            .is_some_and(|expressions| {
                expressions.iter().any(|e| {
                    e.key == "kubernetes.io/metadata.name"
                        && e.operator == "NotIn"
                        && must_exclude
                            .iter()
                            .all(|n| e.values.iter().flatten().any(|v| v == n))
                })
            })
    };
    let resources = |rules: Option<
        &Vec<k8s_openapi::api::admissionregistration::v1::NamedRuleWithOperations>,
    >|
     -> Vec<String> {
        rules
            .into_iter()
            .flatten()
            .flat_map(|r| r.resources.clone().unwrap_or_default())
            .collect()
    };
    match object {
        Object::ValidatingAdmissionPolicyBinding(b) => {
            let spec = &b.spec;
            let selector = spec
                .match_resources
                .as_ref()
                .and_then(|m| m.namespace_selector.as_ref());
            if !excludes(selector) || !spec.policy_name.starts_with("zt-") {
                return Err(format!(
                    "{name}: a binding must exclude {must_exclude:?} and bind one of ours"
                ));
            }
        }
        Object::MutatingAdmissionPolicyBinding(b) => {
            let spec = b.spec.as_ref().ok_or("no spec")?;
            let selector = spec
                .match_resources
                .as_ref()
                .and_then(|m| m.namespace_selector.as_ref());
            let ours = spec
                .policy_name
                .as_deref()
                .is_some_and(|p| p.starts_with("zt-"));
            if !excludes(selector) || !ours {
                return Err(format!(
                    "{name}: a binding must exclude {must_exclude:?} and bind one of ours"
                ));
            }
        }
        Object::MutatingAdmissionPolicy(p) => {
            let spec = p.spec.as_ref().ok_or("no spec")?;
            let touched = resources(
                spec.match_constraints
                    .as_ref()
                    .and_then(|m| m.resource_rules.as_ref()),
            );
            if touched != ["namespaces"] || spec.param_kind.is_some() {
                return Err(format!(
                    "{name}: a mutating policy of ours only sets Namespace labels"
                ));
            }
        }
        Object::ValidatingAdmissionPolicy(p) => {
            let spec = p.spec.as_ref().ok_or("no spec")?;
            let allowed = [
                "networkpolicies",
                "roles",
                "rolebindings",
                "resourcequotas",
                "limitranges",
                "namespaces",
                "serviceaccounts",
                "pods",
            ];
            let touched = resources(
                spec.match_constraints
                    .as_ref()
                    .and_then(|m| m.resource_rules.as_ref()),
            );
            if touched.iter().any(|r| !allowed.contains(&r.as_str())) || spec.param_kind.is_some() {
                return Err(format!(
                    "{name}: validates something no baseline governs: {touched:?}"
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

// --- shared pieces --------------------------------------------------------------------------

fn metadata(baseline: &ValidBaseline, suffix: &str) -> ObjectMeta {
    let name = baseline.name();
    let meta = &baseline.baseline.metadata;
    // Owned by the baseline: the garbage collector removes them with it, operator running or
    // not, so nothing is left blocking.
    let owner = meta.uid.as_ref().map(|uid| OwnerReference {
        api_version: "zerotrust.dev/v1alpha1".to_string(),
        kind: "SecurityBaseline".to_string(),
        name: name.to_string(),
        uid: uid.clone(),
        controller: Some(true),
        block_owner_deletion: None,
    });
    ObjectMeta {
        name: Some(object_name(name, suffix)),
        labels: Some(owner_labels(name)),
        owner_references: owner.map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The namespaces a binding applies to: those the baseline selects, never the cluster's own,
/// the operator's or the excluded ones (by their immutable name label).
fn selection(baseline: &ValidBaseline, settings: &AdmissionSettings) -> LabelSelector {
    let spec = &baseline.baseline.spec;
    let mut selector = spec.namespace_selector.clone().unwrap_or_default();
    let excluded: BTreeSet<String> = ALWAYS_EXCLUDED
        .iter()
        .map(|n| n.to_string())
        .chain([settings.operator_namespace.clone()])
        .chain(spec.excluded_namespaces.iter().cloned())
        .collect();
    let mut expressions = selector.match_expressions.take().unwrap_or_default();
    expressions.push(
        serde_json::from_value(json!({
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": excluded,
        }))
        .expect("a label selector requirement"),
    );
    selector.match_expressions = Some(expressions);
    if selector.match_labels.as_ref().is_some_and(|m| m.is_empty()) {
        selector.match_labels = None;
    }
    selector
}

/// Who may do what the policies otherwise refuse: the operator, the break-glass group, and, in a
/// namespace being deleted, the namespace controller and garbage collector.
fn privileged(settings: &AdmissionSettings) -> Value {
    json!({
        "name": "privileged",
        "expression": format!(
            "request.userInfo.username == {} || (has(request.userInfo.groups) && {} in request.userInfo.groups) || (namespaceObject != null && has(namespaceObject.metadata.deletionTimestamp))",
            cel(&settings.operator_user),
            cel(&settings.break_glass_group),
        ),
    })
}

fn rule(group: &str, resources: &[&str], operations: &[&str]) -> Value {
    json!({
        "apiGroups": [group],
        "apiVersions": ["*"],
        "operations": operations,
        "resources": resources,
        "scope": "*",
    })
}

fn match_constraints(rules: Vec<Value>) -> Value {
    json!({
        "matchPolicy": "Equivalent",
        "namespaceSelector": {},
        "objectSelector": {},
        "resourceRules": rules,
    })
}

fn validating_policy(
    baseline: &ValidBaseline,
    settings: &AdmissionSettings,
    suffix: &str,
    spec: Value,
) -> [Object; 2] {
    let mut policy: ValidatingAdmissionPolicy =
        serde_json::from_value(json!({"spec": spec})).expect("a ValidatingAdmissionPolicy");
    policy.metadata = metadata(baseline, suffix);
    let actions = match baseline.baseline.spec.mode {
        Mode::Enforce => vec!["Deny"],
        Mode::Audit => vec!["Warn", "Audit"],
    };
    let mut binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "spec": {
            "policyName": object_name(baseline.name(), suffix),
            "validationActions": actions,
            "matchResources": {
                "matchPolicy": "Equivalent",
                "namespaceSelector": selection(baseline, settings),
                "objectSelector": {},
            },
        },
    }))
    .expect("a ValidatingAdmissionPolicyBinding");
    binding.metadata = metadata(baseline, suffix);
    [
        Object::ValidatingAdmissionPolicy(policy),
        Object::ValidatingAdmissionPolicyBinding(binding),
    ]
}

/// CEL: the rank of a version label's value, -1 when it is not a version.
fn version_rank(version: &str) -> String {
    format!(
        "({version} == 'latest' ? 1000000 : ({version}.matches(r'^v1\\.[0-9]{{1,3}}$') ? int({version}.substring(3)) : -1))"
    )
}

fn level_rank(level: PodSecurityLevel) -> i64 {
    match level {
        PodSecurityLevel::Privileged => 0,
        PodSecurityLevel::Baseline => 1,
        PodSecurityLevel::Restricted => 2,
    }
}

fn policy_version_rank(version: &str) -> i64 {
    if version == "latest" {
        1_000_000
    } else {
        version
            .strip_prefix("v1.")
            .and_then(|m| m.parse().ok())
            .unwrap_or(-1)
    }
}

/// The baseline's Pod Security policy per mode, as (mode, level, version).
fn pod_security(baseline: &ValidBaseline) -> Vec<(&'static str, PodSecurityLevel, String)> {
    let spec = &baseline.baseline.spec;
    let version = spec.pod_security_version().to_string();
    spec.pod_security
        .iter()
        .flat_map(|psa| {
            [
                ("enforce", psa.enforce),
                ("audit", psa.audit),
                ("warn", psa.warn),
            ]
        })
        .filter_map(|(mode, level)| Some((mode, level?, version.clone())))
        .collect()
}

/// CEL variables reading one mode's labels from `labels` (a variable holding a label map):
/// `<prefix><Mode>Rank` (-1 without a valid level), `...Version`, `...VersionRank`.
fn mode_variables(prefix: &str, labels: &str, mode: &str) -> Vec<Value> {
    let key = cel(&format!("{PSA_LABEL_PREFIX}{mode}"));
    let version_key = cel(&format!("{PSA_LABEL_PREFIX}{mode}-version"));
    let name = format!("{prefix}{}{}", &mode[..1].to_uppercase(), &mode[1..]);
    vec![
        json!({
            "name": format!("{name}Rank"),
            "expression": format!("{key} in {labels} && {labels}[{key}] in variables.ranks ? variables.ranks[{labels}[{key}]] : -1"),
        }),
        json!({
            "name": format!("{name}Version"),
            "expression": format!("{version_key} in {labels} ? {labels}[{version_key}] : 'latest'"),
        }),
        json!({
            "name": format!("{name}VersionRank"),
            "expression": version_rank(&format!("variables.{name}Version")),
        }),
    ]
}

fn ranks() -> Value {
    json!({
        "name": "ranks",
        "expression": "{'privileged': 0, 'baseline': 1, 'restricted': 2}",
    })
}

// --- the policies -----------------------------------------------------------------------------

/// Pod Security labels set on the Namespace as it is created or updated into the selector,
/// raising (never lowering) each mode to the baseline's policy, as the operator's own label apply
/// would; several baselines each raise, so the strictest wins.
fn pod_security_at_creation(
    baseline: &ValidBaseline,
    settings: &AdmissionSettings,
    now: i64,
) -> [Object; 2] {
    let suffix = "pod-security";
    let mut variables = vec![
        json!({"name": "labels", "expression": "has(object.metadata.labels) ? object.metadata.labels : {}"}),
        ranks(),
    ];
    let mut entries = Vec::new();
    for (mode, level, version) in pod_security(baseline) {
        variables.extend(mode_variables("live", "variables.labels", mode));
        let name = format!("live{}{}", &mode[..1].to_uppercase(), &mode[1..]);
        let (l, v) = (level_rank(level), policy_version_rank(&version));
        let floor = i64::from(PSA_VERSION_FLOOR);
        let key = cel(&format!("{PSA_LABEL_PREFIX}{mode}"));
        let version_key = cel(&format!("{PSA_LABEL_PREFIX}{mode}-version"));
        entries.push(format!(
            "{key}: variables.{name}Rank >= {l} ? variables.labels[{key}] : {}",
            cel(level.as_str())
        ));
        entries.push(format!(
            "{version_key}: (variables.{name}Rank > {l} && variables.{name}VersionRank >= {floor}) || (variables.{name}Rank == {l} && variables.{name}VersionRank >= {}) ? variables.{name}Version : {}",
            v.max(floor),
            cel(&version)
        ));
    }
    // A namespace exempt from Pod Security is left as it is.
    let exempt = exempt_cel(
        baseline,
        Control::PodSecurity,
        now,
        "object.metadata.name",
        "(has(object.metadata.labels) ? object.metadata.labels : {})",
    );
    let mut spec = json!({
        "failurePolicy": "Fail",
        "reinvocationPolicy": "Never",
        "matchConstraints": match_constraints(vec![rule("", &["namespaces"], &["CREATE", "UPDATE"])]),
        "variables": variables,
            "mutations": [{
                "patchType": "ApplyConfiguration",
                "applyConfiguration": {
                    "expression": format!(
                        "Object{{metadata: Object.metadata{{labels: {{{}}}}}}}",
                        entries.join(", ")
                ),
            },
        }],
    });
    // Not the operator's own label applies (its identity, its field manager): they carry the
    // composition of every Enforce baseline already, and raising them here would undo a release,
    // since a deleted Delete baseline's policy stays in force at the API server for a moment
    // after the operator removes it.
    let mut conditions = vec![json!({
        "name": "not-the-operators-apply",
        "expression": format!(
            "!(request.userInfo.username == {} && has(request.options) && has(request.options.fieldManager) && request.options.fieldManager == {})",
            cel(&settings.operator_user),
            cel(FIELD_MANAGER),
        ),
    })];
    if let Some(exempt) = exempt {
        conditions.push(json!({"name": "not-exempt", "expression": format!("!{exempt}")}));
    }
    spec["matchConditions"] = json!(conditions);
    let mut policy: MutatingAdmissionPolicy =
        serde_json::from_value(json!({ "spec": spec })).expect("a MutatingAdmissionPolicy");
    policy.metadata = metadata(baseline, suffix);
    let mut binding: MutatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "spec": {
            "policyName": object_name(baseline.name(), suffix),
            "matchResources": {
                "matchPolicy": "Equivalent",
                "namespaceSelector": selection(baseline, settings),
                "objectSelector": {},
            },
        },
    }))
    .expect("a MutatingAdmissionPolicyBinding");
    binding.metadata = metadata(baseline, suffix);
    [
        Object::MutatingAdmissionPolicy(policy),
        Object::MutatingAdmissionPolicyBinding(binding),
    ]
}

/// Whether a baseline created at `baseline_created` gates a namespace created at
/// `namespace_created`: the rule of the gate's CEL below (a namespace older than the baseline is
/// not gated); gated when either time is unknown, as the CEL is without the baseline's.
pub fn gates_namespace(baseline_created: Option<&Time>, namespace_created: Option<&Time>) -> bool {
    match (baseline_created, namespace_created) {
        (Some(baseline), Some(namespace)) => namespace.0 >= baseline.0,
        _ => true,
    }
}

/// Pods are refused in a namespace created after the baseline until the operator has put every
/// control in place and marked the namespace onboarded. Namespaces that existed before the
/// baseline already run pods; they are onboarded without a gate.
fn onboarding_gate(baseline: &ValidBaseline, settings: &AdmissionSettings) -> [Object; 2] {
    let name = baseline.name();
    let marker = cel(&onboarded_label(name));
    let before = baseline
        .baseline
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| {
            format!(
                // Declared a timestamp, handed over as a string: dyn() resolves at run time.
                "timestamp(dyn(namespaceObject.metadata.creationTimestamp)) < timestamp({}) || ",
                cel(&t.0.to_string())
            )
        })
        .unwrap_or_default();
    // The operator never creates pods, so only the break-glass group passes the gate.
    let break_glass = format!(
        "(has(request.userInfo.groups) && {} in request.userInfo.groups)",
        cel(&settings.break_glass_group)
    );
    let spec = json!({
        "failurePolicy": "Fail",
        "matchConstraints": match_constraints(vec![rule("", &["pods"], &["CREATE"])]),
        "validations": [{
            "expression": format!(
                "{break_glass} || {before}(has(namespaceObject.metadata.labels) && {marker} in namespaceObject.metadata.labels && namespaceObject.metadata.labels[{marker}] == 'true')"
            ),
            "messageExpression": format!(
                "'namespace ' + request.namespace + ' is being onboarded by SecurityBaseline {name}: its controls are not all in place yet; retry in a few seconds'"
            ),
            "reason": "Forbidden",
        }],
    });
    validating_policy(baseline, settings, "onboarding-gate", spec)
}

/// Nobody but the operator (or the break-glass group, or the namespace controller in a namespace
/// being deleted) may create, change or delete what the baseline owns: its objects, their
/// ownership labels, the Pod Security labels it set (lowered or removed), the onboarding marker,
/// the default ServiceAccount's automount setting.
fn tamper_protection(
    baseline: &ValidBaseline,
    settings: &AdmissionSettings,
    now: i64,
) -> [Object; 2] {
    let name = baseline.name();
    let spec = &baseline.baseline.spec;
    let ours = |labels: &str| {
        format!(
            "({m} in {labels} && {labels}[{m}] == {mv} && {b} in {labels} && {labels}[{b}] == {bv})",
            m = cel(MANAGED_BY_LABEL),
            mv = cel(MANAGED_BY_VALUE),
            b = cel(BASELINE_LABEL),
            bv = cel(name),
        )
    };
    let marker = cel(&onboarded_label(name));
    let mut variables = vec![
        privileged(settings),
        json!({"name": "oldLabels", "expression": "oldObject != null && has(oldObject.metadata.labels) ? oldObject.metadata.labels : {}"}),
        json!({"name": "newLabels", "expression": "object != null && has(object.metadata.labels) ? object.metadata.labels : {}"}),
        ranks(),
    ];
    // A mode's policy is met by labels holding at least the baseline's level and version, at a
    // version no older than the floor: the same rule as the operator's diff.
    let mut kept = Vec::new();
    for (mode, level, version) in pod_security(baseline) {
        variables.extend(mode_variables("old", "variables.oldLabels", mode));
        variables.extend(mode_variables("new", "variables.newLabels", mode));
        let (l, v) = (level_rank(level), policy_version_rank(&version));
        let floor = i64::from(PSA_VERSION_FLOOR);
        let met = |side: &str| {
            let n = format!("{side}{}{}", &mode[..1].to_uppercase(), &mode[1..]);
            format!(
                "(variables.{n}VersionRank >= {floor} && (variables.{n}Rank > {l} || (variables.{n}Rank == {l} && variables.{n}VersionRank >= {v})))"
            )
        };
        kept.push(format!("(!{} || {})", met("old"), met("new")));
    }
    // Exempt namespaces keep whatever labels they are given.
    let psa_exempt = exempt_cel(
        baseline,
        Control::PodSecurity,
        now,
        "object.metadata.name",
        "variables.newLabels",
    );
    let psa_kept = match (kept.is_empty(), psa_exempt) {
        (true, _) => "true".to_string(),
        (false, None) => kept.join(" && "),
        (false, Some(exempt)) => format!("{exempt} || ({})", kept.join(" && ")),
    };
    let owned_kinds =
        "['networkpolicies', 'roles', 'rolebindings', 'resourcequotas', 'limitranges']";
    let mut validations = vec![
        json!({
            "expression": format!(
                "variables.privileged || !(request.resource.resource in {owned_kinds}) || !({} || {})",
                ours("variables.oldLabels"),
                ours("variables.newLabels"),
            ),
            "messageExpression": format!(
                "request.resource.resource + ' ' + request.name + ' belongs to SecurityBaseline {name}: only zerotrust-operator may create, change or delete it, or give or take its ownership labels'"
            ),
            "reason": "Forbidden",
        }),
        json!({
            "expression": format!(
                "variables.privileged || request.resource.resource != 'namespaces' || (({marker} in variables.oldLabels) == ({marker} in variables.newLabels) && (!({marker} in variables.newLabels) || variables.oldLabels[{marker}] == variables.newLabels[{marker}]))"
            ),
            "message": format!("the label {} is set only by zerotrust-operator", onboarded_label(name)),
            "reason": "Forbidden",
        }),
        json!({
            "expression": format!(
                "variables.privileged || request.resource.resource != 'namespaces' || request.operation != 'UPDATE' || ({psa_kept})"
            ),
            "message": format!("SecurityBaseline {name} requires these Pod Security labels: they may not be removed or weakened"),
            "reason": "Forbidden",
        }),
    ];
    if spec
        .service_accounts
        .as_ref()
        .and_then(|s| s.automount_default_token)
        == Some(false)
    {
        let exempt = exempt_cel(
            baseline,
            Control::ServiceAccount,
            now,
            "namespaceObject.metadata.name",
            "(has(namespaceObject.metadata.labels) ? namespaceObject.metadata.labels : {})",
        )
        .map(|e| format!("{e} || "))
        .unwrap_or_default();
        validations.push(json!({
            "expression": format!("variables.privileged || request.resource.resource != 'serviceaccounts' || object == null || object.metadata.name != 'default' || {exempt}!(has(oldObject.automountServiceAccountToken) && oldObject.automountServiceAccountToken == false) || (has(object.automountServiceAccountToken) && object.automountServiceAccountToken == false)"),
            "message": format!("SecurityBaseline {name} keeps the default ServiceAccount from automounting its token"),
            "reason": "Forbidden",
        }));
    }
    let write = ["CREATE", "UPDATE", "DELETE"];
    let policy_spec = json!({
        "failurePolicy": "Fail",
        "matchConstraints": match_constraints(vec![
            rule("networking.k8s.io", &["networkpolicies"], &write),
            rule("rbac.authorization.k8s.io", &["roles", "rolebindings"], &write),
            rule("", &["resourcequotas", "limitranges"], &write),
            rule("", &["namespaces"], &["CREATE", "UPDATE"]),
            rule("", &["serviceaccounts"], &["UPDATE"]),
        ]),
        "variables": variables,
        "validations": validations,
    });
    validating_policy(baseline, settings, "tamper", policy_spec)
}

/// NetworkPolicies of others that open what the default-deny closes are refused: a rule without
/// peers, a peer outside the namespace that none of the baseline's own allows admits as well.
/// The same rule as the engine's Widened finding, from the same allows.
fn network_policy_refusal(
    baseline: &ValidBaseline,
    settings: &AdmissionSettings,
    now: i64,
) -> [Object; 2] {
    let name = baseline.name();
    // The baseline's own allows, as any namespace gets them (those to the API server aside: a
    // tenant naming its addresses is refused, the stricter answer).
    let ours: Vec<NetworkPolicy> = render_objects(
        name,
        &baseline.baseline.spec,
        "_",
        &Exempted::default(),
        &[],
    )
    .into_iter()
    .filter_map(|o| match o {
        Object::NetworkPolicy(p) => Some(p),
        _ => None,
    })
    .collect();
    let denies = |direction: &str| {
        ours.iter().any(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.policy_types.as_ref())
                .is_some_and(|t| t.iter().any(|x| x == direction))
        })
    };
    let allowed = |ingress: bool| -> Vec<Opening> {
        ours.iter()
            .flat_map(|p| {
                let summary = summarize(p);
                if ingress {
                    summary.ingress
                } else {
                    summary.egress
                }
            })
            .collect()
    };
    // In a namespace exempt from network policy, tenants write what policies they like.
    let exempt = exempt_cel(
        baseline,
        Control::NetworkPolicy,
        now,
        "namespaceObject.metadata.name",
        "(has(namespaceObject.metadata.labels) ? namespaceObject.metadata.labels : {})",
    )
    .map(|e| format!("{e} || "))
    .unwrap_or_default();
    let mut validations = Vec::new();
    for (direction, field, peers) in [("Ingress", "ingress", "from"), ("Egress", "egress", "to")] {
        if !denies(direction) {
            continue;
        }
        let allowed = allowed(direction == "Ingress");
        let any = |covers: Vec<String>| {
            if covers.is_empty() {
                "false".to_string()
            } else {
                covers.join(" || ")
            }
        };
        let peer_allowed = any(allowed.iter().map(|a| covers(a, Some("p"), "r")).collect());
        let anywhere_allowed = any(allowed.iter().map(|a| covers(a, None, "r")).collect());
        let isolates = if direction == "Ingress" {
            "(!has(object.spec.policyTypes) || 'Ingress' in object.spec.policyTypes)"
        } else {
            "(has(object.spec.policyTypes) ? 'Egress' in object.spec.policyTypes : has(object.spec.egress))"
        };
        // Each rule: its peers all inside the namespace or allowed; a rule without peers admits
        // anywhere, so only an allow of anywhere covers it.
        let rule_ok = format!(
            "(has(r.{peers}) && size(r.{peers}) > 0 ? r.{peers}.all(p, {in_namespace} || {peer_allowed}) : {anywhere_allowed})",
            in_namespace = in_namespace("p"),
        );
        validations.push(json!({
            "expression": format!(
                "variables.privileged || {exempt}!{isolates} || !has(object.spec.{field}) || object.spec.{field}.all(r, {rule_ok})"
            ),
            "message": format!(
                "this NetworkPolicy lets {field} traffic through that SecurityBaseline {name} denies: only peers inside the namespace, or those the baseline allows, may be named"
            ),
            "reason": "Forbidden",
        }));
    }
    let spec = json!({
        "failurePolicy": "Fail",
        "matchConstraints": match_constraints(vec![
            rule("networking.k8s.io", &["networkpolicies"], &["CREATE", "UPDATE"]),
        ]),
        "variables": [privileged(settings)],
        "validations": validations,
    });
    validating_policy(baseline, settings, "network-policies", spec)
}

/// CEL: the peer `p` lies inside the request's namespace: pods only, or a namespace selector
/// that names exactly this namespace by its immutable name label.
fn in_namespace(p: &str) -> String {
    format!(
        "(!has({p}.ipBlock) && (has({p}.namespaceSelector) ? ((!has({p}.namespaceSelector.matchExpressions) || size({p}.namespaceSelector.matchExpressions) == 0) && has({p}.namespaceSelector.matchLabels) && {p}.namespaceSelector.matchLabels == {{'kubernetes.io/metadata.name': request.namespace}}) : has({p}.podSelector)))"
    )
}

/// CEL: what the tenant rule `rule` admits from its peer `peer` (None: a rule without peers,
/// which admits anywhere) is admitted by `allowed` too.
fn covers(allowed: &Opening, peer: Option<&str>, rule: &str) -> String {
    let peer_test = match (&allowed.peer, peer) {
        (Peer::Anywhere, _) => "true".to_string(),
        (_, None) => return "false".to_string(),
        (Peer::Addresses { cidr, except }, Some(p)) => {
            let block = format!("{p}.ipBlock.cidr");
            let mut test = format!(
                "has({p}.ipBlock) && cidr({}).containsCIDR({block})",
                cel(cidr)
            );
            for e in except {
                let e = cel(e);
                test.push_str(&format!(
                    " && (!(cidr({e}).containsCIDR({block}) || cidr({block}).containsCIDR({e})) || (has({p}.ipBlock.except) && {p}.ipBlock.except.exists(x, cidr(x).containsCIDR({e}))))"
                ));
            }
            test
        }
        (Peer::Namespaces { namespaces, pods }, Some(p)) => {
            let mut test = format!(
                "!has({p}.ipBlock) && has({p}.namespaceSelector) && {}",
                selector_equals(&format!("{p}.namespaceSelector"), namespaces)
            );
            if let Some(pods) = pods {
                test.push_str(&format!(
                    " && has({p}.podSelector) && {}",
                    selector_equals(&format!("{p}.podSelector"), pods)
                ));
            }
            test
        }
    };
    format!("(({peer_test}) && {})", ports_covered(&allowed.ports, rule))
}

/// CEL: the selector at `path` equals `selector` (labels and expressions, order as written).
fn selector_equals(path: &str, selector: &LabelSelector) -> String {
    let labels: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{}: {}", cel(k), cel(v)))
        .collect();
    let mut test = format!(
        "(has({path}.matchLabels) ? {path}.matchLabels : {{}}) == {{{}}}",
        labels.join(", ")
    );
    let expressions = selector.match_expressions.clone().unwrap_or_default();
    test.push_str(&format!(
        " && (has({path}.matchExpressions) ? size({path}.matchExpressions) : 0) == {}",
        expressions.len()
    ));
    for (i, e) in expressions.iter().enumerate() {
        let values: Vec<String> = e.values.iter().flatten().map(|v| cel(v)).collect();
        test.push_str(&format!(
            " && {path}.matchExpressions[{i}].key == {} && {path}.matchExpressions[{i}].operator == {} && (has({path}.matchExpressions[{i}].values) ? {path}.matchExpressions[{i}].values : []) == [{}]",
            cel(&e.key),
            cel(&e.operator),
            values.join(", ")
        ));
    }
    format!("({test})")
}

/// CEL: every port of the tenant rule `rule` is among `allowed` (None: every port is).
fn ports_covered(allowed: &Option<Vec<NetworkPolicyPort>>, rule: &str) -> String {
    let Some(allowed) = allowed else {
        return "true".to_string();
    };
    let each: Vec<String> = allowed
        .iter()
        .map(|a| {
            let protocol = cel(a.protocol.as_deref().unwrap_or("TCP"));
            let port = match &a.port {
                None => "true".to_string(),
                Some(IntOrString::Int(lo)) => {
                    let hi = a.end_port.unwrap_or(*lo);
                    format!(
                        "has(t.port) && type(t.port) == int && t.port >= {lo} && (has(t.endPort) ? t.endPort : t.port) <= {hi}"
                    )
                }
                Some(IntOrString::String(name)) => format!(
                    "has(t.port) && type(t.port) == string && t.port == {} && !has(t.endPort)",
                    cel(name)
                ),
            };
            format!("((has(t.protocol) ? t.protocol : 'TCP') == {protocol} && {port})")
        })
        .collect();
    format!(
        "(has({rule}.ports) && size({rule}.ports) > 0 && {rule}.ports.all(t, {}))",
        each.join(" || ")
    )
}
