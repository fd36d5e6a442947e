//! A baseline's NetworkPolicies: the default-deny and the allows that make it livable (DNS,
//! same-namespace traffic, the API server, the baseline's own allow rules).

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec as K8sNetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Endpoint, metadata};
use crate::api::{AllowPeer, AllowPort, DnsProvider, NetworkPolicySpec, PolicyType};

fn policy_types(types: &[PolicyType]) -> Vec<String> {
    let mut sorted = types.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted.iter().map(|t| t.as_str().to_string()).collect()
}

fn select_labels(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        match_expressions: None,
    }
}

/// The NetworkPolicies of `np` for `namespace`: the default-deny, then each allow it asks for.
pub(super) fn network_policies(
    baseline: &str,
    np: &NetworkPolicySpec,
    namespace: &str,
    api_server: &[Endpoint],
) -> impl Iterator<Item = NetworkPolicy> {
    let mut policies = Vec::new();
    if !np.default_deny.is_empty() {
        policies.push(default_deny(baseline, np, namespace));
    }
    if np.allow_dns {
        let (peers, ports) = dns_peers(np);
        let rule = (peers, Some(ports));
        policies.push(allow_policy(
            baseline,
            namespace,
            "allow-dns",
            PolicyType::Egress,
            vec![rule],
        ));
    }
    if np.allow_same_namespace {
        policies.push(allow_same_namespace(baseline, np, namespace));
    }
    // Unknown addresses render nothing: an egress policy without rules allows nothing anyway.
    if np.allow_api_server && !api_server.is_empty() {
        policies.push(allow_api_server(baseline, namespace, api_server));
    }
    for rule in &np.allow {
        let peers = rule.peers.iter().map(peer).collect();
        let ports = (!rule.ports.is_empty()).then(|| rule.ports.iter().map(allow_port).collect());
        let suffix = format!("allow-{}", rule.name);
        policies.push(allow_policy(
            baseline,
            namespace,
            &suffix,
            rule.direction,
            vec![(peers, ports)],
        ));
    }
    policies.into_iter()
}

/// Every pod isolated in the denied directions, with no rule.
fn default_deny(baseline: &str, np: &NetworkPolicySpec, namespace: &str) -> NetworkPolicy {
    NetworkPolicy {
        metadata: metadata(baseline, namespace, "default-deny"),
        spec: Some(K8sNetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(policy_types(&np.default_deny)),
            ..K8sNetworkPolicySpec::default()
        }),
    }
}

/// Traffic between the namespace's own pods, in the denied directions.
fn allow_same_namespace(baseline: &str, np: &NetworkPolicySpec, namespace: &str) -> NetworkPolicy {
    let same_namespace = || NetworkPolicyPeer {
        pod_selector: Some(LabelSelector::default()),
        ..NetworkPolicyPeer::default()
    };
    let denies = |t| np.default_deny.contains(&t);
    NetworkPolicy {
        metadata: metadata(baseline, namespace, "allow-same-namespace"),
        spec: Some(K8sNetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            // Only the denied directions: an allow policy isolates every direction it names.
            policy_types: Some(policy_types(&np.default_deny)),
            ingress: denies(PolicyType::Ingress).then(|| {
                vec![NetworkPolicyIngressRule {
                    from: Some(vec![same_namespace()]),
                    ports: None,
                }]
            }),
            egress: denies(PolicyType::Egress).then(|| {
                vec![NetworkPolicyEgressRule {
                    to: Some(vec![same_namespace()]),
                    ports: None,
                }]
            }),
        }),
    }
}

/// Egress to each address and port the API server answers at.
fn allow_api_server(baseline: &str, namespace: &str, api_server: &[Endpoint]) -> NetworkPolicy {
    let mut endpoints = api_server.to_vec();
    endpoints.sort();
    endpoints.dedup();
    let rules = endpoints
        .iter()
        .map(|e| {
            let prefix = if e.address.contains(':') { 128 } else { 32 };
            let block = NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: format!("{}/{prefix}", e.address),
                    except: None,
                }),
                ..NetworkPolicyPeer::default()
            };
            (
                vec![block],
                Some(vec![port("TCP", IntOrString::Int(e.port), None)]),
            )
        })
        .collect();
    allow_policy(
        baseline,
        namespace,
        "allow-api-server",
        PolicyType::Egress,
        rules,
    )
}

/// One rule of an allow policy: its peers and ports (None: every port).
type AllowRuleParts = (Vec<NetworkPolicyPeer>, Option<Vec<NetworkPolicyPort>>);

/// A NetworkPolicy selecting every pod that lets through `rules` in `direction` only (an allow
/// policy isolates each direction it names, so it names only one the default-deny denies).
fn allow_policy(
    baseline: &str,
    namespace: &str,
    suffix: &str,
    direction: PolicyType,
    rules: Vec<AllowRuleParts>,
) -> NetworkPolicy {
    let (ingress, egress) = match direction {
        PolicyType::Ingress => (
            Some(
                rules
                    .into_iter()
                    .map(|(from, ports)| NetworkPolicyIngressRule {
                        from: Some(from),
                        ports,
                    })
                    .collect(),
            ),
            None,
        ),
        PolicyType::Egress => (
            None,
            Some(
                rules
                    .into_iter()
                    .map(|(to, ports)| NetworkPolicyEgressRule {
                        to: Some(to),
                        ports,
                    })
                    .collect(),
            ),
        ),
    };
    NetworkPolicy {
        metadata: metadata(baseline, namespace, suffix),
        spec: Some(K8sNetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec![direction.as_str().to_string()]),
            ingress,
            egress,
        }),
    }
}

fn port(protocol: &str, number: IntOrString, end_port: Option<i32>) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(protocol.to_string()),
        port: Some(number),
        end_port,
    }
}

fn allow_port(p: &AllowPort) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(p.protocol.as_str().to_string()),
        port: p.port.clone(),
        end_port: p.end_port,
    }
}

/// A peer of an allow rule. A namespace named in the baseline is selected by its
/// `kubernetes.io/metadata.name` label, which only the API server sets.
fn peer(p: &AllowPeer) -> NetworkPolicyPeer {
    if let Some(cidr) = &p.cidr {
        return NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: cidr.clone(),
                except: (!p.except.is_empty()).then(|| p.except.clone()),
            }),
            ..NetworkPolicyPeer::default()
        };
    }
    let namespace_selector = match (&p.namespace, &p.namespace_selector) {
        (Some(name), _) => Some(select_labels(&[("kubernetes.io/metadata.name", name)])),
        (None, selector) => selector.as_ref().map(as_stored),
    };
    NetworkPolicyPeer {
        namespace_selector,
        pod_selector: p.pods.as_ref().map(as_stored),
        ip_block: None,
    }
}

/// `selector` as the API server stores it: it drops empty `matchLabels`, `matchExpressions` and
/// `values`, and what render writes must read back equal, or every pass would see drift.
fn as_stored(selector: &LabelSelector) -> LabelSelector {
    LabelSelector {
        match_labels: selector.match_labels.clone().filter(|m| !m.is_empty()),
        match_expressions: selector
            .match_expressions
            .as_ref()
            .filter(|e| !e.is_empty())
            .map(|expressions| {
                expressions
                    .iter()
                    .map(|e| LabelSelectorRequirement {
                        values: e.values.clone().filter(|v| !v.is_empty()),
                        ..e.clone()
                    })
                    .collect()
            }),
    }
}

/// Where DNS is, by provider, and on which ports.
fn dns_peers(np: &NetworkPolicySpec) -> (Vec<NetworkPolicyPeer>, Vec<NetworkPolicyPort>) {
    let on = |number: i32| {
        vec![
            port("UDP", IntOrString::Int(number), None),
            port("TCP", IntOrString::Int(number), None),
        ]
    };
    let pods_in = |namespace: &str, labels: &[(&str, &str)]| NetworkPolicyPeer {
        // Every namespace carries kubernetes.io/metadata.name; a custom label on kube-system is
        // something nobody remembers to set.
        namespace_selector: Some(select_labels(&[("kubernetes.io/metadata.name", namespace)])),
        pod_selector: Some(select_labels(labels)),
        ip_block: None,
    };
    let dns = np.dns.clone().unwrap_or_default();
    match dns.provider {
        DnsProvider::KubeDNS => (
            vec![pods_in("kube-system", &[("k8s-app", "kube-dns")])],
            on(53),
        ),
        DnsProvider::NodeLocalDNSCache => {
            let address = dns.node_local_address.as_deref().unwrap_or("169.254.20.10");
            let prefix = if address.contains(':') { 128 } else { 32 };
            let block = NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: format!("{address}/{prefix}"),
                    except: None,
                }),
                ..NetworkPolicyPeer::default()
            };
            (vec![block], on(53))
        }
        DnsProvider::OpenShift => (
            vec![pods_in(
                "openshift-dns",
                &[("dns.operator.openshift.io/daemonset-dns", "default")],
            )],
            on(5353),
        ),
        DnsProvider::Custom => {
            let ports = if dns.ports.is_empty() {
                on(53)
            } else {
                dns.ports.iter().map(allow_port).collect()
            };
            (dns.peers.iter().map(peer).collect(), ports)
        }
    }
}
