//! The refusal of tenant NetworkPolicies that open what the baseline's default-deny closes, on
//! request (`refuseWidening`).

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use super::AdmissionSettings;
use super::policy::{match_constraints, privileged, rule, validating_policy};
use crate::api::Control;
use crate::engine::exemption::{Exempted, cel, exempt_cel};
use crate::engine::object::Object;
use crate::engine::render::render_objects;
use crate::engine::validate::ValidBaseline;
use crate::engine::widening::{Opening, Peer, summarize};

/// NetworkPolicies of others that open what the default-deny closes are refused: a rule without
/// peers, a peer outside the namespace that none of the baseline's own allows admits as well.
/// The same rule as the engine's Widened finding, from the same allows.
pub(super) fn network_policy_refusal(
    baseline: &ValidBaseline,
    settings: &AdmissionSettings,
    now: i64,
) -> [Object; 2] {
    let ours = own_policies(baseline);
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
    let validations: Vec<Value> = [("Ingress", "ingress", "from"), ("Egress", "egress", "to")]
        .into_iter()
        .filter(|(direction, _, _)| denies(&ours, direction))
        .map(|(direction, field, peers)| {
            let allowed = allowed(&ours, direction == "Ingress");
            direction_kept(baseline.name(), &exempt, &allowed, direction, field, peers)
        })
        .collect();
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

/// The baseline's own NetworkPolicies, as any namespace gets them (those to the API server
/// aside: a tenant naming its addresses is refused, the stricter answer).
fn own_policies(baseline: &ValidBaseline) -> Vec<NetworkPolicy> {
    render_objects(
        baseline.name(),
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
    .collect()
}

/// Some policy of `ours` isolates pods in `direction`.
fn denies(ours: &[NetworkPolicy], direction: &str) -> bool {
    ours.iter().any(|p| {
        p.spec
            .as_ref()
            .and_then(|s| s.policy_types.as_ref())
            .is_some_and(|t| t.iter().any(|x| x == direction))
    })
}

/// What `ours` let through, ingress or egress.
fn allowed(ours: &[NetworkPolicy], ingress: bool) -> Vec<Opening> {
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
}

/// The validation for one denied direction: every rule of a tenant's policy that isolates it
/// names only peers inside the namespace or ones `allowed` admits as well.
fn direction_kept(
    name: &str,
    exempt: &str,
    allowed: &[Opening],
    direction: &str,
    field: &str,
    peers: &str,
) -> Value {
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
    json!({
        "expression": format!(
            "variables.privileged || {exempt}!{isolates} || !has(object.spec.{field}) || object.spec.{field}.all(r, {rule_ok})"
        ),
        "message": format!(
            "this NetworkPolicy lets {field} traffic through that SecurityBaseline {name} denies: only peers inside the namespace, or those the baseline allows, may be named"
        ),
        "reason": "Forbidden",
    })
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
