//! NetworkPolicies reduced to what a default-deny finding needs: which peers outside their
//! namespace they admit, in which direction, on which ports. NetworkPolicies are additive, so such
//! a peer gets through whatever our default-deny says, unless one of the baseline's own allows
//! admits it too. Every policy but the baseline's own is judged so, whoever made it (labels prove
//! nothing). A summary is bounded: a tenant cannot grow the operator's memory with huge policies,
//! because what does not fit is taken as opening everything.

use std::net::IpAddr;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};

/// Most peers a summary holds per direction; a policy with more is taken as admitting anything.
pub const MAX_PEERS: usize = 32;
/// Most ports a summary holds per rule; a rule with more is taken as admitting every port.
const MAX_PORTS: usize = 16;
/// Longest selector (as JSON) a summary holds; a longer one is taken as every namespace.
const MAX_SELECTOR_BYTES: usize = 256;

const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Who a rule admits, outside the policy's own namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Peer {
    /// A rule without peers: every source or destination, in the cluster and outside it.
    Anywhere,
    /// An address block, less what it leaves out.
    Addresses { cidr: String, except: Vec<String> },
    /// Pods in the namespaces a selector picks (all of them for an empty selector), all pods or
    /// those `pods` picks.
    Namespaces {
        namespaces: LabelSelector,
        pods: Option<LabelSelector>,
    },
}

/// One peer a rule admits, with the ports (None: every port).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Opening {
    pub peer: Peer,
    pub ports: Option<Vec<NetworkPolicyPort>>,
}

/// A NetworkPolicy, as far as the finding is concerned.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicySummary {
    pub name: String,
    /// What it admits from outside the namespace, if it isolates ingress.
    pub ingress: Vec<Opening>,
    /// What it admits to outside the namespace, if it isolates egress.
    pub egress: Vec<Opening>,
}

/// Reduces `policy` to its openings.
pub fn summarize(policy: &NetworkPolicy) -> PolicySummary {
    let namespace = policy.metadata.namespace.as_deref().unwrap_or_default();
    let spec = policy.spec.clone().unwrap_or_default();
    let types = spec.policy_types.clone().unwrap_or_else(|| {
        // What the API server defaults: Ingress always, Egress when there are egress rules.
        let mut types = vec!["Ingress".to_string()];
        if spec.egress.is_some() {
            types.push("Egress".to_string());
        }
        types
    });
    let isolates = |t: &str| types.iter().any(|x| x == t);
    let ingress = spec
        .ingress
        .iter()
        .flatten()
        .map(|r| (r.from.as_deref(), r.ports.as_deref()));
    let egress = spec
        .egress
        .iter()
        .flatten()
        .map(|r| (r.to.as_deref(), r.ports.as_deref()));
    PolicySummary {
        name: policy.metadata.name.clone().unwrap_or_default(),
        ingress: if isolates("Ingress") {
            openings(ingress, namespace)
        } else {
            Vec::new()
        },
        egress: if isolates("Egress") {
            openings(egress, namespace)
        } else {
            Vec::new()
        },
    }
}

fn openings<'a>(
    rules: impl Iterator<
        Item = (
            Option<&'a [NetworkPolicyPeer]>,
            Option<&'a [NetworkPolicyPort]>,
        ),
    >,
    namespace: &str,
) -> Vec<Opening> {
    let mut found = Vec::new();
    for (peers, ports) in rules {
        let ports = ports
            .filter(|p| !p.is_empty() && p.len() <= MAX_PORTS)
            .map(<[NetworkPolicyPort]>::to_vec);
        let peers: Vec<Peer> = match peers {
            None | Some([]) => vec![Peer::Anywhere],
            Some(peers) => peers.iter().filter_map(|p| outside(p, namespace)).collect(),
        };
        found.extend(peers.into_iter().map(|peer| Opening {
            peer,
            ports: ports.clone(),
        }));
        if found.len() > MAX_PEERS {
            return vec![Opening {
                peer: Peer::Anywhere,
                ports: None,
            }];
        }
    }
    found
}

/// The peer, if it lies outside `namespace`.
fn outside(peer: &NetworkPolicyPeer, namespace: &str) -> Option<Peer> {
    if let Some(block) = &peer.ip_block {
        return Some(Peer::Addresses {
            cidr: block.cidr.clone(),
            except: block.except.clone().unwrap_or_default(),
        });
    }
    let Some(namespaces) = &peer.namespace_selector else {
        // Pods only: the policy's own namespace.
        return peer.pod_selector.is_none().then_some(Peer::Anywhere);
    };
    let only_this = namespaces
        .match_expressions
        .as_ref()
        .is_none_or(Vec::is_empty)
        && namespaces.match_labels.as_ref().is_some_and(|labels| {
            labels.len() == 1 && labels.get(NAME_LABEL).map(String::as_str) == Some(namespace)
        });
    if only_this {
        return None;
    }
    let fits =
        |s: &LabelSelector| serde_json::to_vec(s).is_ok_and(|j| j.len() <= MAX_SELECTOR_BYTES);
    if !fits(namespaces) || peer.pod_selector.as_ref().is_some_and(|p| !fits(p)) {
        return Some(Peer::Namespaces {
            namespaces: LabelSelector::default(),
            pods: None,
        });
    }
    Some(Peer::Namespaces {
        namespaces: normalized(namespaces),
        pods: peer
            .pod_selector
            .as_ref()
            .map(normalized)
            .filter(|p| *p != LabelSelector::default()),
    })
}

/// A selector with empty maps and lists dropped, so `{}` and `{matchLabels: {}}` compare equal.
fn normalized(selector: &LabelSelector) -> LabelSelector {
    LabelSelector {
        match_labels: selector.match_labels.clone().filter(|m| !m.is_empty()),
        match_expressions: selector.match_expressions.clone().filter(|m| !m.is_empty()),
    }
}

/// One direction's openings of a policy.
type Openings = fn(&PolicySummary) -> &Vec<Opening>;

/// Why `policy` opens what `ours` (one baseline's rendered NetworkPolicies) closes, if it does:
/// a peer outside the namespace, in a direction our policies isolate, that none of our allows
/// admits as well.
pub fn widening(policy: &PolicySummary, ours: &[&NetworkPolicy]) -> Option<String> {
    let ours: Vec<(Vec<String>, PolicySummary)> = ours
        .iter()
        .map(|p| {
            let types = p
                .spec
                .as_ref()
                .and_then(|s| s.policy_types.clone())
                .unwrap_or_default();
            (types, summarize(p))
        })
        .collect();
    let denies = |t: &str| ours.iter().any(|(types, _)| types.iter().any(|x| x == t));
    let directions: [(&str, &str, Openings); 2] = [
        ("Ingress", "ingress from", |p| &p.ingress),
        ("Egress", "egress to", |p| &p.egress),
    ];
    for (direction, phrase, openings) in directions {
        if !denies(direction) {
            continue;
        }
        let uncovered = openings(policy).iter().find(|opening| {
            !ours
                .iter()
                .flat_map(|(_, allow)| openings(allow))
                .any(|allowed| covers(allowed, opening))
        });
        if let Some(opening) = uncovered {
            return Some(format!("allows {phrase} {}", describe(opening)));
        }
    }
    None
}

fn describe(opening: &Opening) -> String {
    let peer = match &opening.peer {
        Peer::Anywhere => "anywhere".to_string(),
        Peer::Addresses { cidr, .. } if cidr == "0.0.0.0/0" || cidr == "::/0" => {
            format!("every address ({cidr})")
        }
        Peer::Addresses { cidr, .. } => cidr.clone(),
        Peer::Namespaces { namespaces, pods } => {
            let which = if *namespaces == LabelSelector::default() {
                "every namespace".to_string()
            } else {
                format!(
                    "namespaces {}",
                    serde_json::to_string(namespaces).unwrap_or_default()
                )
            };
            match pods {
                None => which,
                Some(pods) => format!(
                    "pods {} in {which}",
                    serde_json::to_string(pods).unwrap_or_default()
                ),
            }
        }
    };
    match &opening.ports {
        None => peer,
        Some(ports) => {
            let ports: Vec<String> = ports.iter().map(port_text).collect();
            format!("{peer} on {}", ports.join(", "))
        }
    }
}

fn port_text(port: &NetworkPolicyPort) -> String {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match (&port.port, port.end_port) {
        (None, _) => format!("every {protocol} port"),
        (Some(IntOrString::Int(p)), Some(end)) => format!("{protocol} {p}-{end}"),
        (Some(IntOrString::Int(p)), None) => format!("{protocol} {p}"),
        (Some(IntOrString::String(name)), _) => format!("{protocol} {name}"),
    }
}

/// True when everything `opening` admits, `allowed` admits as well.
fn covers(allowed: &Opening, opening: &Opening) -> bool {
    covers_peer(&allowed.peer, &opening.peer) && covers_ports(&allowed.ports, &opening.ports)
}

fn covers_peer(allowed: &Peer, peer: &Peer) -> bool {
    match (allowed, peer) {
        (Peer::Anywhere, _) => true,
        (
            Peer::Addresses { cidr, except },
            Peer::Addresses {
                cidr: inner,
                except: inner_except,
            },
        ) => {
            within(inner, cidr)
                && except
                    .iter()
                    .all(|e| !overlaps(e, inner) || inner_except.iter().any(|ie| within(e, ie)))
        }
        (
            Peer::Namespaces { namespaces, pods },
            Peer::Namespaces {
                namespaces: inner,
                pods: inner_pods,
            },
        ) => {
            let all_namespaces = *namespaces == LabelSelector::default();
            (all_namespaces || namespaces == inner) && (pods.is_none() || pods == inner_pods)
        }
        _ => false,
    }
}

fn covers_ports(
    allowed: &Option<Vec<NetworkPolicyPort>>,
    ports: &Option<Vec<NetworkPolicyPort>>,
) -> bool {
    let Some(allowed) = allowed else {
        return true;
    };
    let Some(ports) = ports else {
        return false;
    };
    let protocol = |p: &NetworkPolicyPort| p.protocol.clone().unwrap_or_else(|| "TCP".to_string());
    ports.iter().all(|port| {
        allowed.iter().any(|a| {
            protocol(a) == protocol(port)
                && match (&a.port, &port.port) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(IntOrString::Int(lo)), Some(IntOrString::Int(p))) => {
                        let hi = a.end_port.unwrap_or(*lo);
                        *p >= *lo && port.end_port.unwrap_or(*p) <= hi
                    }
                    (Some(a), Some(p)) => a == p && port.end_port.is_none(),
                }
        })
    })
}

/// An address block: its network address and prefix length.
fn block(cidr: &str) -> Option<(IpAddr, u8)> {
    let (address, prefix) = cidr.split_once('/')?;
    Some((address.parse().ok()?, prefix.parse().ok()?))
}

fn masked(address: IpAddr, prefix: u8) -> Option<u128> {
    let (bits, width) = match address {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32u8),
        IpAddr::V6(a) => (u128::from(a), 128u8),
    };
    if prefix > width {
        return None;
    }
    let host_bits = u32::from(width - prefix);
    Some(if host_bits >= 128 {
        0
    } else {
        bits >> host_bits
    })
}

/// True when block `inner` lies within block `outer` (same family). Unparsable blocks are never
/// within anything, so they count as uncovered openings.
pub(crate) fn within(inner: &str, outer: &str) -> bool {
    let (Some((a, a_len)), Some((b, b_len))) = (block(inner), block(outer)) else {
        return false;
    };
    a.is_ipv4() == b.is_ipv4() && a_len >= b_len && masked(a, b_len) == masked(b, b_len)
}

fn overlaps(a: &str, b: &str) -> bool {
    within(a, b) || within(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(namespace: &str, spec: serde_json::Value) -> NetworkPolicy {
        serde_json::from_value(json!({
            "metadata": {"name": "theirs", "namespace": namespace},
            "spec": spec,
        }))
        .unwrap()
    }

    fn deny_both() -> NetworkPolicy {
        policy(
            "ns",
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        )
    }

    fn allow_dns() -> NetworkPolicy {
        policy(
            "ns",
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
                "to": [{"namespaceSelector": {"matchLabels": {NAME_LABEL: "kube-system"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}),
        )
    }

    fn finding(spec: serde_json::Value) -> Option<String> {
        widening(
            &summarize(&policy("ns", spec)),
            &[&deny_both(), &allow_dns()],
        )
    }

    #[test]
    fn allow_all_and_empty_peers_are_findings() {
        let all = json!({"podSelector": {}, "ingress": [{}], "egress": [{}],
                         "policyTypes": ["Ingress", "Egress"]});
        assert_eq!(
            finding(all).as_deref(),
            Some("allows ingress from anywhere")
        );
        let empty_from = json!({"podSelector": {}, "ingress": [{"from": []}]});
        assert!(finding(empty_from).is_some());
        let world = json!({"podSelector": {}, "policyTypes": ["Egress"],
                           "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]});
        assert_eq!(
            finding(world).as_deref(),
            Some("allows egress to every address (0.0.0.0/0)")
        );
        let v6 = json!({"podSelector": {}, "policyTypes": ["Egress"],
                        "egress": [{"to": [{"ipBlock": {"cidr": "::/0"}}]}]});
        assert!(finding(v6).is_some());
        let other = json!({"podSelector": {"matchLabels": {"app": "x"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}]});
        assert!(finding(other).unwrap().contains("namespaces"));
    }

    #[test]
    fn traffic_within_the_namespace_or_what_the_baseline_allows_is_no_finding() {
        let same = json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {NAME_LABEL: "ns"}}}]}],
            "policyTypes": ["Ingress", "Egress"]});
        assert_eq!(finding(same), None);
        let dns = json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
            "to": [{"namespaceSelector": {"matchLabels": {NAME_LABEL: "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}]}]});
        assert_eq!(finding(dns), None);
    }

    #[test]
    fn more_than_the_baseline_allows_is_a_finding() {
        let dns_all_ports = json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
            "to": [{"namespaceSelector": {"matchLabels": {NAME_LABEL: "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]}]});
        assert!(finding(dns_all_ports).is_some());
        let all_kube_system = json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
            "to": [{"namespaceSelector": {"matchLabels": {NAME_LABEL: "kube-system"}}}],
            "ports": [{"protocol": "UDP", "port": 53}]}]});
        assert!(finding(all_kube_system).is_some());
    }

    #[test]
    fn only_directions_the_baseline_denies_count() {
        let open_egress = json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]});
        let ingress_only = policy("ns", json!({"podSelector": {}, "policyTypes": ["Ingress"]}));
        assert_eq!(
            widening(
                &summarize(&policy("ns", open_egress.clone())),
                &[&ingress_only]
            ),
            None
        );
        assert!(finding(open_egress).is_some());
        // Rules in a direction the policy does not isolate are not enforced at all.
        let ignored = json!({"podSelector": {}, "policyTypes": ["Ingress"], "egress": [{}]});
        assert_eq!(finding(ignored), None);
        // No default-deny, nothing to widen.
        assert_eq!(
            widening(
                &summarize(&policy("ns", json!({"podSelector": {}, "ingress": [{}]}))),
                &[]
            ),
            None
        );
    }

    #[test]
    fn summaries_stay_small_whatever_the_policy() {
        let peers: Vec<serde_json::Value> = (0..MAX_PEERS + 5)
            .map(|i| json!({"ipBlock": {"cidr": format!("10.0.{i}.0/24")}}))
            .collect();
        let many = summarize(&policy(
            "ns",
            json!({"podSelector": {}, "ingress": [{"from": peers}]}),
        ));
        assert_eq!(
            many.ingress,
            vec![Opening {
                peer: Peer::Anywhere,
                ports: None
            }]
        );
        let huge: serde_json::Map<String, serde_json::Value> = (0..100)
            .map(|i| (format!("key-{i}"), json!("value")))
            .collect();
        let big = summarize(&policy(
            "ns",
            json!({"podSelector": {}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": huge}}]}]}),
        ));
        assert_eq!(
            big.ingress[0].peer,
            Peer::Namespaces {
                namespaces: LabelSelector::default(),
                pods: None
            },
            "an oversized selector counts as every namespace"
        );
    }

    #[test]
    fn address_blocks_are_covered_only_by_wider_blocks_with_the_same_holes() {
        let wide = Peer::Addresses {
            cidr: "10.0.0.0/8".into(),
            except: vec!["10.9.0.0/16".into()],
        };
        let inside = Peer::Addresses {
            cidr: "10.1.0.0/16".into(),
            except: vec![],
        };
        let over_hole = Peer::Addresses {
            cidr: "10.9.1.0/24".into(),
            except: vec![],
        };
        let hole_kept = Peer::Addresses {
            cidr: "10.0.0.0/8".into(),
            except: vec!["10.9.0.0/16".into()],
        };
        assert!(covers_peer(&wide, &inside));
        assert!(!covers_peer(&wide, &over_hole));
        assert!(covers_peer(&wide, &hole_kept));
        assert!(!covers_peer(&inside, &wide));
        assert!(!within("::/0", "0.0.0.0/0") && within("fd00::1/128", "fd00::/8"));
        assert!(!within("garbage", "0.0.0.0/0"));
    }

    #[test]
    fn ports_are_covered_by_ranges_and_names() {
        let port = |protocol: &str, port: IntOrString, end: Option<i32>| NetworkPolicyPort {
            protocol: Some(protocol.into()),
            port: Some(port),
            end_port: end,
        };
        let range = Some(vec![port("TCP", IntOrString::Int(8000), Some(9000))]);
        assert!(covers_ports(
            &range,
            &Some(vec![port("TCP", IntOrString::Int(8080), None)])
        ));
        assert!(!covers_ports(
            &range,
            &Some(vec![port("UDP", IntOrString::Int(8080), None)])
        ));
        assert!(!covers_ports(
            &range,
            &Some(vec![port("TCP", IntOrString::Int(8500), Some(9500))])
        ));
        assert!(!covers_ports(&range, &None));
        assert!(covers_ports(&None, &None));
        let named = Some(vec![port("TCP", IntOrString::String("http".into()), None)]);
        assert!(covers_ports(&named, &named.clone()));
    }
}
