//! Names that can be squatted: the namespaces a baseline trusts by name (allow rules' peers, RBAC
//! subjects' namespaces, exemptions) that do not exist. A namespace's name is unforgeable only
//! while it exists: whoever creates one of these later gets what the baseline grants it.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::api::{AllowPeer, DnsProvider, SecurityBaselineSpec, SubjectKind};

/// The label the API server sets to a namespace's name: the one selector label that names.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// How many unclaimed names a message lists; the count says how many there are in all. Five
/// names of 63 characters with their longest fields keep a message under a report's 1,024 bytes.
pub const MAX_LISTED_UNCLAIMED: usize = 5;

/// A namespace a baseline trusts by name, and where it does.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TrustedName {
    pub namespace: String,
    /// The field that names it, e.g. `networkPolicy.allow[monitoring]`.
    pub trusted_by: String,
}

/// Every namespace `spec` trusts by name, sorted, each with the first field that names it.
/// `${namespace}` (the namespace being configured) always exists, and is left out.
pub fn trusted_names(spec: &SecurityBaselineSpec) -> Vec<TrustedName> {
    let mut found = BTreeSet::new();
    let mut add = |namespace: &str, trusted_by: String| {
        if !namespace.contains("${") {
            found.insert(TrustedName {
                namespace: namespace.to_string(),
                trusted_by,
            });
        }
    };
    if let Some(np) = &spec.network_policy {
        for rule in &np.allow {
            for name in rule.peers.iter().flat_map(peer_names) {
                add(&name, format!("networkPolicy.allow[{}]", rule.name));
            }
        }
        if let Some(dns) = np.dns.as_ref().filter(|_| np.allow_dns) {
            if dns.provider == DnsProvider::OpenShift {
                add("openshift-dns", "networkPolicy.dns".to_string());
            }
            for name in dns.peers.iter().flat_map(peer_names) {
                add(&name, "networkPolicy.dns.peers".to_string());
            }
        }
    }
    for role in spec.rbac.iter().flat_map(|r| &r.roles) {
        for subject in &role.subjects {
            if let (SubjectKind::ServiceAccount, Some(ns)) = (&subject.kind, &subject.namespace) {
                add(ns, format!("rbac.roles[{}].subjects", role.name));
            }
        }
    }
    for (i, exemption) in spec.exemptions.iter().enumerate() {
        for ns in &exemption.namespaces {
            add(ns, format!("exemptions[{i}].namespaces"));
        }
    }
    // One entry per namespace: the first field (in sort order) that names it.
    let mut seen = BTreeSet::new();
    found
        .into_iter()
        .filter(|t| seen.insert(t.namespace.clone()))
        .collect()
}

/// The namespaces one peer names: `namespace`, or a selector on the name label (`matchLabels`,
/// or `In` expressions).
fn peer_names(peer: &AllowPeer) -> Vec<String> {
    let mut names: Vec<String> = peer.namespace.iter().cloned().collect();
    names.extend(peer.namespace_selector.iter().flat_map(selector_names));
    names
}

fn selector_names(selector: &LabelSelector) -> Vec<String> {
    let by_label = selector
        .match_labels
        .iter()
        .flat_map(|labels| labels.get(NAME_LABEL).cloned());
    let by_expression = selector
        .match_expressions
        .iter()
        .flatten()
        .filter(|e| e.key == NAME_LABEL && e.operator == "In")
        .flat_map(|e| e.values.iter().flatten().cloned());
    by_label.chain(by_expression).collect()
}

/// The names `spec` trusts that no namespace holds (`exists` says which do): whoever creates one
/// gets what the baseline grants it.
pub fn unclaimed_names(
    spec: &SecurityBaselineSpec,
    exists: impl Fn(&str) -> bool,
) -> Vec<TrustedName> {
    trusted_names(spec)
        .into_iter()
        .filter(|t| !exists(&t.namespace))
        .collect()
}

/// One line about `unclaimed`, bounded: the first [`MAX_LISTED_UNCLAIMED`] names and how many
/// more. None when there are none.
pub fn unclaimed_message(unclaimed: &[TrustedName]) -> Option<String> {
    if unclaimed.is_empty() {
        return None;
    }
    let listed: Vec<String> = unclaimed
        .iter()
        .take(MAX_LISTED_UNCLAIMED)
        .map(|t| format!("{} ({})", t.namespace, t.trusted_by))
        .collect();
    let more = unclaimed.len().saturating_sub(MAX_LISTED_UNCLAIMED);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    Some(format!(
        "namespaces trusted by name that do not exist: {}{more}; whoever creates one gets what the baseline grants it (create them, or remove them from the spec)",
        listed.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SecurityBaselineSpec;

    fn spec(yaml: &str) -> SecurityBaselineSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    const TRUSTING: &str = "
networkPolicy:
  defaultDeny: [Ingress]
  allow:
  - name: monitoring
    direction: Ingress
    peers:
    - namespace: monitoring
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress}}
    - namespaceSelector:
        matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [a, b]}]
    - namespaceSelector: {matchLabels: {team: x}}
    - pods: {matchLabels: {app: x}}
    - cidr: 10.0.0.0/8
rbac:
  roles:
  - name: ci
    rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]
    subjects:
    - {kind: ServiceAccount, name: deployer, namespace: ci}
    - {kind: ServiceAccount, name: own, namespace: '${namespace}'}
    - {kind: User, name: alice}
exemptions:
- namespaces: [legacy, monitoring]
  controls: [NetworkPolicy]
  reason: moving
";

    #[test]
    fn finds_every_name_a_baseline_trusts() {
        let names: Vec<(String, String)> = trusted_names(&spec(TRUSTING))
            .into_iter()
            .map(|t| (t.namespace, t.trusted_by))
            .collect();
        let allow = "networkPolicy.allow[monitoring]".to_string();
        assert_eq!(
            names,
            [
                ("a".into(), allow.clone()),
                ("b".into(), allow.clone()),
                ("ci".into(), "rbac.roles[ci].subjects".into()),
                ("ingress".into(), allow.clone()),
                ("legacy".into(), "exemptions[0].namespaces".into()),
                // Named twice: listed once.
                ("monitoring".into(), "exemptions[0].namespaces".into()),
            ]
        );
    }

    #[test]
    fn only_names_no_namespace_holds_are_unclaimed() {
        let existing = ["a", "b", "ingress", "legacy"];
        let unclaimed = unclaimed_names(&spec(TRUSTING), |n| existing.contains(&n));
        let names: Vec<&str> = unclaimed.iter().map(|t| t.namespace.as_str()).collect();
        assert_eq!(names, ["ci", "monitoring"]);
        let message = unclaimed_message(&unclaimed).unwrap();
        assert!(
            message.contains("ci (rbac.roles[ci].subjects)")
                && message.contains("monitoring (exemptions[0].namespaces)"),
            "{message}"
        );
        assert_eq!(unclaimed_message(&[]), None);
        assert!(unclaimed_names(&spec(TRUSTING), |_| true).is_empty());
    }

    #[test]
    fn dns_peers_count_and_the_message_is_bounded() {
        let openshift = spec(
            "networkPolicy: {defaultDeny: [Egress], allowDNS: true, dns: {provider: OpenShift}}",
        );
        assert_eq!(trusted_names(&openshift)[0].namespace, "openshift-dns");
        let many: Vec<TrustedName> = (0..25)
            .map(|i| TrustedName {
                namespace: format!("ns-{i:02}"),
                trusted_by: "x".into(),
            })
            .collect();
        let message = unclaimed_message(&many).unwrap();
        assert!(message.contains("ns-04") && !message.contains("ns-05"));
        assert!(message.contains("and 20 more"), "{message}");
        // The longest names and fields stay under a report message's limit.
        let longest: Vec<TrustedName> = (0..25)
            .map(|i| TrustedName {
                namespace: format!("{i:02}{}", "n".repeat(61)),
                trusted_by: format!("rbac.roles[{}].subjects", "r".repeat(63)),
            })
            .collect();
        let message = unclaimed_message(&longest).unwrap();
        assert!(
            message.len() <= crate::engine::MAX_MESSAGE,
            "{}",
            message.len()
        );
    }
}
