//! Network policy: the default deny's directions, DNS, the API server allow, and allow rules with
//! their peers and ports.

use std::collections::BTreeSet;

use super::Errors;
use super::syntax::{is_dns_label, validate_selector};
use crate::engine::widening;

/// The default deny and what the baseline lets through it.
pub(super) fn validate_network_policy(np: &crate::api::NetworkPolicySpec, errors: &mut Errors) {
    let unique: BTreeSet<_> = np.default_deny.iter().collect();
    if unique.len() != np.default_deny.len() {
        errors.add("spec.networkPolicy.defaultDeny", "lists a direction twice");
    }
    if np.allow_dns && !np.default_deny.contains(&crate::api::PolicyType::Egress) {
        errors.add(
            "spec.networkPolicy.allowDNS",
            "needs Egress in defaultDeny: without an egress deny the allow policy would itself isolate egress",
        );
    }
    if np.allow_same_namespace && np.default_deny.is_empty() {
        errors.add("spec.networkPolicy.allowSameNamespace", "needs defaultDeny");
    }
    validate_network_allows(np, errors);
}

/// DNS, allow rules: what the CRD's rules say, checked again with errors that name the field.
fn validate_network_allows(np: &crate::api::NetworkPolicySpec, errors: &mut Errors) {
    if let Some(dns) = &np.dns {
        validate_dns(np, dns, errors);
    }
    if np.allow_api_server && !np.default_deny.contains(&crate::api::PolicyType::Egress) {
        errors.add(
            "spec.networkPolicy.allowAPIServer",
            "needs Egress in defaultDeny",
        );
    }
    validate_allow_rules(np, errors);
}

/// Where DNS is, for allowDNS: a provider's, or peers and ports of its own.
fn validate_dns(
    np: &crate::api::NetworkPolicySpec,
    dns: &crate::api::DnsSpec,
    errors: &mut Errors,
) {
    let path = "spec.networkPolicy.dns";
    if !np.allow_dns {
        errors.add(path, "says where DNS is for allowDNS: set allowDNS: true");
    }
    match dns.provider {
        crate::api::DnsProvider::Custom if dns.peers.is_empty() => {
            errors.add(format!("{path}.peers"), "provider Custom needs peers")
        }
        crate::api::DnsProvider::Custom => {}
        _ if !dns.peers.is_empty() => {
            errors.add(format!("{path}.peers"), "are only for provider Custom")
        }
        _ => {}
    }
    if dns.node_local_address.is_some()
        && dns.provider != crate::api::DnsProvider::NodeLocalDNSCache
    {
        errors.add(
            format!("{path}.nodeLocalAddress"),
            "is only for provider NodeLocalDNSCache",
        );
    }
    if let Some(address) = &dns.node_local_address
        && address.parse::<std::net::IpAddr>().is_err()
    {
        errors.add(
            format!("{path}.nodeLocalAddress"),
            format!("{address:?} is not an IP address"),
        );
    }
    for (i, peer) in dns.peers.iter().enumerate() {
        validate_peer(peer, &format!("{path}.peers[{i}]"), errors);
    }
    for (i, port) in dns.ports.iter().enumerate() {
        validate_port(port, &format!("{path}.ports[{i}]"), errors);
    }
}

/// Allow rules: unique names, directions the default deny denies, and their peers and ports.
fn validate_allow_rules(np: &crate::api::NetworkPolicySpec, errors: &mut Errors) {
    let mut seen = BTreeSet::new();
    for (i, rule) in np.allow.iter().enumerate() {
        let path = format!("spec.networkPolicy.allow[{i}]");
        if !seen.insert(rule.name.as_str()) {
            errors.add(
                format!("{path}.name"),
                format!("{:?} is used by another rule", rule.name),
            );
        }
        if crate::api::RESERVED_ALLOW_NAMES.contains(&rule.name.as_str()) {
            errors.add(
                format!("{path}.name"),
                "dns, same-namespace and api-server are taken by the baseline's own allow policies",
            );
        }
        if !is_dns_label(&rule.name) || rule.name.len() > 40 {
            errors.add(
                format!("{path}.name"),
                "must be at most 40 lowercase letters, digits and '-'",
            );
        }
        if !np.default_deny.contains(&rule.direction) {
            errors.add(
                format!("{path}.direction"),
                format!(
                    "{} is not denied by defaultDeny: an allow policy would isolate it",
                    rule.direction.as_str()
                ),
            );
        }
        if rule.peers.is_empty() {
            errors.add(format!("{path}.peers"), "needs at least one peer");
        }
        for (j, peer) in rule.peers.iter().enumerate() {
            validate_peer(peer, &format!("{path}.peers[{j}]"), errors);
        }
        for (j, port) in rule.ports.iter().enumerate() {
            validate_port(port, &format!("{path}.ports[{j}]"), errors);
        }
    }
}

/// A block `a.b.c.d/n` (or IPv6): its address and prefix length.
fn parse_cidr(cidr: &str) -> Option<(std::net::IpAddr, u8)> {
    let (address, prefix) = cidr.split_once('/')?;
    let address: std::net::IpAddr = address.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let width = if address.is_ipv4() { 32 } else { 128 };
    (prefix <= width).then_some((address, prefix))
}

fn validate_peer(peer: &crate::api::AllowPeer, path: &str, errors: &mut Errors) {
    let has_namespace = peer.namespace.is_some() || peer.namespace_selector.is_some();
    if !has_namespace && peer.pods.is_none() && peer.cidr.is_none() {
        errors.add(path, "needs namespace, namespaceSelector, pods or cidr");
    }
    if peer.namespace.is_some() && peer.namespace_selector.is_some() {
        errors.add(format!("{path}.namespaceSelector"), "excludes namespace");
    }
    if peer.cidr.is_some() && (has_namespace || peer.pods.is_some()) {
        errors.add(
            format!("{path}.cidr"),
            "excludes namespace, namespaceSelector and pods",
        );
    }
    if let Some(ns) = &peer.namespace
        && !is_dns_label(ns)
    {
        errors.add(
            format!("{path}.namespace"),
            format!("{ns:?} is not a namespace name"),
        );
    }
    for (field, selector) in [
        ("namespaceSelector", &peer.namespace_selector),
        ("pods", &peer.pods),
    ] {
        if let Some(selector) = selector {
            validate_selector(selector, &format!("{path}.{field}"), errors);
        }
    }
    match peer.cidr.as_deref().map(|c| (c, parse_cidr(c))) {
        Some((cidr, None)) => errors.add(
            format!("{path}.cidr"),
            format!("{cidr:?} is not an address block such as 10.0.0.0/8"),
        ),
        Some((cidr, Some(_))) => {
            for (k, hole) in peer.except.iter().enumerate() {
                if !widening::within(hole, cidr) {
                    errors.add(
                        format!("{path}.except[{k}]"),
                        format!("{hole:?} is not a block within the cidr"),
                    );
                }
            }
        }
        None if !peer.except.is_empty() => errors.add(format!("{path}.except"), "is only for cidr"),
        None => {}
    }
}

fn validate_port(port: &crate::api::AllowPort, path: &str, errors: &mut Errors) {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match (&port.port, port.end_port) {
        (Some(IntOrString::Int(p)), _) if !(1..=65535).contains(p) => {
            errors.add(format!("{path}.port"), format!("{p} is not a port number"))
        }
        (Some(IntOrString::String(name)), _) if !is_port_name(name) => errors.add(
            format!("{path}.port"),
            format!(
                "{name:?} is not a port name: at most 15 lowercase letters, digits and '-', with a letter, no '--' and no '-' at either end"
            ),
        ),
        (Some(IntOrString::Int(p)), Some(end)) if end < *p => errors.add(
            format!("{path}.endPort"),
            format!("{end} is below port {p}"),
        ),
        (Some(IntOrString::String(_)) | None, Some(_)) => {
            errors.add(format!("{path}.endPort"), "needs a numeric port")
        }
        _ => {}
    }
}

/// A container port name as Kubernetes accepts it (an IANA service name).
pub(crate) fn is_port_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}
