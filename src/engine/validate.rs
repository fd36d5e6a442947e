//! Semantic validation of a SecurityBaseline: everything the CRD schema cannot express, checked
//! before any namespace is touched. Errors name the field, as `kubectl` users expect.

use std::collections::BTreeSet;
use std::fmt;

use kube::core::Selector;

use super::quantity::Quantity;
use super::template;
use crate::api::{
    LimitSpec, LimitType, RoleSpec, SecurityBaseline, SecurityBaselineSpec, SubjectKind,
};

/// One problem with a baseline, at a dotted field path such as `spec.rbac.roles[0].rules[1].verbs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// All the problems found in one baseline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidSpec {
    pub baseline: String,
    pub errors: Vec<FieldError>,
}

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let listed: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        write!(
            f,
            "SecurityBaseline {:?} is invalid: {}",
            self.baseline,
            listed.join("; ")
        )
    }
}

/// A baseline that passed validation, with its selector parsed. Only these can be rendered.
#[derive(Debug, Clone)]
pub struct ValidBaseline {
    pub baseline: SecurityBaseline,
    pub(crate) selector: Option<Selector>,
    /// Each exemption's namespace selector, parsed, in the order of `spec.exemptions`.
    pub(crate) exemption_selectors: Vec<Option<Selector>>,
}

impl ValidBaseline {
    pub fn name(&self) -> &str {
        self.baseline.metadata.name.as_deref().unwrap_or_default()
    }
}

const PRIVILEGED_VERBS: [&str; 3] = ["escalate", "bind", "impersonate"];

/// Resources whose access is what an attacker in a namespace looks for; granted only on request.
const SENSITIVE_RESOURCES: [&str; 5] = [
    "secrets",
    "pods/exec",
    "pods/attach",
    "serviceaccounts/token",
    "nodes/proxy",
];

/// The oldest Pod Security version a baseline may pin: v1.30. Older pins leave out checks the
/// restricted level has since gained (at v1.0 it did not check privilege escalation, capabilities
/// or runAsUser), so a pin is a way to weaken a namespace; v1.30 is the oldest minor still under
/// a major provider's extended support in 2026, and the first with GA admission policies.
pub const PSA_VERSION_FLOOR: u32 = 30;

pub fn validate(baseline: &SecurityBaseline) -> Result<ValidBaseline, InvalidSpec> {
    let mut errors = Errors::default();
    let name = baseline.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        errors.add("metadata.name", "is required");
    } else if name.len() > 63 || !is_dns_subdomain(&name) {
        errors.add(
            "metadata.name",
            "must be at most 63 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit",
        );
    }
    let spec = &baseline.spec;
    for (i, ns) in spec.excluded_namespaces.iter().enumerate() {
        if !is_dns_label(ns) {
            errors.add(
                format!("spec.excludedNamespaces[{i}]"),
                format!("{ns:?} is not a namespace name"),
            );
        }
    }
    let selector = match &spec.namespace_selector {
        None => None,
        Some(selector) => {
            validate_selector(selector, "spec.namespaceSelector", &mut errors);
            Selector::try_from(selector.clone()).ok()
        }
    };
    let exemption_selectors = validate_exemptions(spec, &mut errors);
    if let Some(np) = &spec.network_policy {
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
        validate_network_allows(np, &mut errors);
    }
    if let Some(version) = spec
        .pod_security
        .as_ref()
        .and_then(|p| p.version.as_deref())
        && !is_psa_version(version)
    {
        errors.add(
            "spec.podSecurity.version",
            format!(
                "{version:?} must be \"latest\" or \"v1.NN\" with NN at least {PSA_VERSION_FLOOR}"
            ),
        );
    }
    if let Some(rbac) = &spec.rbac {
        let mut seen = BTreeSet::new();
        for (i, role) in rbac.roles.iter().enumerate() {
            let path = format!("spec.rbac.roles[{i}]");
            if !seen.insert(role.name.as_str()) {
                errors.add(
                    format!("{path}.name"),
                    format!("{:?} is used by another role", role.name),
                );
            }
            validate_role(role, &path, &mut errors);
        }
    }
    if let Some(quota) = &spec.resource_quota {
        if quota.hard.is_empty() {
            errors.add("spec.resourceQuota.hard", "must list at least one resource");
        }
        validate_quantities(
            quota.hard.iter(),
            ResourceNames::Quota,
            "spec.resourceQuota.hard",
            &mut errors,
        );
    }
    if let Some(limits) = &spec.limit_range {
        if limits.limits.is_empty() {
            errors.add("spec.limitRange.limits", "must have at least one item");
        }
        for (i, item) in limits.limits.iter().enumerate() {
            validate_limit(item, &format!("spec.limitRange.limits[{i}]"), &mut errors);
        }
    }
    if errors.0.is_empty() {
        Ok(ValidBaseline {
            baseline: baseline.clone(),
            selector,
            exemption_selectors,
        })
    } else {
        Err(InvalidSpec {
            baseline: name,
            errors: errors.0,
        })
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }
}

fn validate_selector(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    at: &str,
    errors: &mut Errors,
) {
    for (key, value) in selector.match_labels.iter().flatten() {
        let path = format!("{at}.matchLabels[{key:?}]");
        if !is_label_key(key) {
            errors.add(&path, "is not a valid label key");
        }
        if !is_label_value(value) {
            errors.add(&path, format!("{value:?} is not a valid label value"));
        }
    }
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        let path = format!("{at}.matchExpressions[{i}]");
        if !is_label_key(&req.key) {
            errors.add(
                format!("{path}.key"),
                format!("{:?} is not a valid label key", req.key),
            );
        }
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errors.add(
                format!("{path}.values"),
                format!("must not be empty for operator {}", req.operator),
            ),
            "Exists" | "DoesNotExist" if !values.is_empty() => errors.add(
                format!("{path}.values"),
                format!("must be empty for operator {}", req.operator),
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errors.add(
                format!("{path}.operator"),
                format!("{other:?} must be one of In, NotIn, Exists, DoesNotExist"),
            ),
        }
        for value in values.iter().filter(|v| !is_label_value(v)) {
            errors.add(
                format!("{path}.values"),
                format!("{value:?} is not a valid label value"),
            );
        }
    }
}

/// Exemptions: where, what and why; their selectors parsed.
fn validate_exemptions(spec: &SecurityBaselineSpec, errors: &mut Errors) -> Vec<Option<Selector>> {
    let roles: BTreeSet<&str> = spec
        .rbac
        .iter()
        .flat_map(|r| &r.roles)
        .map(|r| r.name.as_str())
        .collect();
    let mut selectors = Vec::new();
    for (i, exemption) in spec.exemptions.iter().enumerate() {
        let path = format!("spec.exemptions[{i}]");
        if exemption.reason.trim().is_empty() {
            errors.add(
                format!("{path}.reason"),
                "is required: say why the control is not enforced",
            );
        }
        if exemption.namespaces.is_empty() && exemption.namespace_selector.is_none() {
            errors.add(&path, "needs namespaces or a namespaceSelector");
        }
        if exemption.controls.is_empty() && exemption.roles.is_empty() {
            errors.add(
                format!("{path}.controls"),
                "needs controls or roles: what is not enforced",
            );
        }
        for (j, ns) in exemption.namespaces.iter().enumerate() {
            if !is_dns_label(ns) {
                errors.add(
                    format!("{path}.namespaces[{j}]"),
                    format!("{ns:?} is not a namespace name"),
                );
            }
        }
        for (j, role) in exemption.roles.iter().enumerate() {
            if !roles.contains(role.as_str()) {
                errors.add(
                    format!("{path}.roles[{j}]"),
                    format!(
                        "{role:?} is not one of spec.rbac.roles: the exemption would exempt nothing"
                    ),
                );
            }
        }
        selectors.push(exemption.namespace_selector.as_ref().and_then(|selector| {
            validate_selector(selector, &format!("{path}.namespaceSelector"), errors);
            Selector::try_from(selector.clone()).ok()
        }));
    }
    selectors
}

/// DNS, allow rules: what the CRD's rules say, checked again with errors that name the field.
fn validate_network_allows(np: &crate::api::NetworkPolicySpec, errors: &mut Errors) {
    if let Some(dns) = &np.dns {
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
    if np.allow_api_server && !np.default_deny.contains(&crate::api::PolicyType::Egress) {
        errors.add(
            "spec.networkPolicy.allowAPIServer",
            "needs Egress in defaultDeny",
        );
    }
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
                if !super::widening::within(hole, cidr) {
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

fn validate_role(role: &RoleSpec, path: &str, errors: &mut Errors) {
    if !is_dns_label(&role.name) {
        errors.add(
            format!("{path}.name"),
            format!("{:?} must be lowercase letters, digits and '-'", role.name),
        );
    }
    if role.rules.is_empty() {
        errors.add(format!("{path}.rules"), "must have at least one rule");
    }
    for (j, rule) in role.rules.iter().enumerate() {
        let rule_path = format!("{path}.rules[{j}]");
        for (field, items) in [
            ("apiGroups", &rule.api_groups),
            ("resources", &rule.resources),
            ("verbs", &rule.verbs),
            ("resourceNames", &rule.resource_names),
        ] {
            if items.iter().any(|item| item.contains("${")) {
                errors.add(
                    format!("{rule_path}.{field}"),
                    "templates are expanded only in subject names and namespaces; this would be granted literally",
                );
            }
            if field == "resourceNames" {
                continue;
            }
            if items.is_empty() {
                errors.add(
                    format!("{rule_path}.{field}"),
                    "must not be empty: list what is granted explicitly",
                );
            }
            if !role.allow_wildcards && items.iter().any(|item| item == "*") {
                errors.add(
                    format!("{rule_path}.{field}"),
                    "'*' is not least privilege; list them explicitly or set allowWildcards: true",
                );
            }
        }
        if !role.allow_sensitive_resources
            && let Some(resource) = rule
                .resources
                .iter()
                .find(|r| SENSITIVE_RESOURCES.contains(&r.as_str()))
        {
            errors.add(
                format!("{rule_path}.resources"),
                format!("{resource:?} is what attackers look for; set allowSensitiveResources: true to grant it"),
            );
        }
        if !role.allow_privileged_verbs
            && let Some(verb) = rule
                .verbs
                .iter()
                .find(|v| PRIVILEGED_VERBS.contains(&v.as_str()))
        {
            errors.add(
                format!("{rule_path}.verbs"),
                format!("{verb:?} lets a subject gain more privileges; set allowPrivilegedVerbs: true to grant it"),
            );
        }
    }
    for (j, subject) in role.subjects.iter().enumerate() {
        let subject_path = format!("{path}.subjects[{j}]");
        if let Err(e) = template::check(&subject.name) {
            errors.add(format!("{subject_path}.name"), e.to_string());
        } else if subject.name.is_empty() {
            errors.add(format!("{subject_path}.name"), "is required");
        } else if subject.kind == SubjectKind::ServiceAccount
            && !is_dns_subdomain(&template::expand(&subject.name, "x"))
        {
            errors.add(
                format!("{subject_path}.name"),
                format!("{:?} is not a ServiceAccount name", subject.name),
            );
        }
        let api_group_ok = matches!(
            (subject.api_group.as_deref(), subject.kind),
            (None, _)
                | (Some(""), SubjectKind::ServiceAccount)
                | (
                    Some("rbac.authorization.k8s.io"),
                    SubjectKind::User | SubjectKind::Group
                )
        );
        if !api_group_ok {
            errors.add(
                format!("{subject_path}.apiGroup"),
                "is rbac.authorization.k8s.io for User and Group subjects and empty for ServiceAccount subjects",
            );
        }
        match (&subject.namespace, subject.kind) {
            (Some(_), SubjectKind::User | SubjectKind::Group) => errors.add(
                format!("{subject_path}.namespace"),
                "is only for ServiceAccount subjects",
            ),
            (Some(ns), SubjectKind::ServiceAccount) => {
                if let Err(e) = template::check(ns) {
                    errors.add(format!("{subject_path}.namespace"), e.to_string());
                } else if ns.contains("${") && ns != "${namespace}" {
                    errors.add(
                        format!("{subject_path}.namespace"),
                        format!("{ns:?}: a namespace may be exactly ${{namespace}} or a literal name; a template such as \"${{namespace}}-ci\" hands the Role to whoever creates that namespace"),
                    );
                } else if !is_dns_label(&template::expand(ns, "x")) {
                    errors.add(
                        format!("{subject_path}.namespace"),
                        format!("{ns:?} is not a namespace name"),
                    );
                }
            }
            (None, _) => {}
        }
    }
}

/// Which resource names the API server takes in a list of quantities: its own
/// `IsStandard{Quota,Container,}ResourceName` rules for names without a `/` (a name with one is
/// an extended or fully qualified resource).
#[derive(Clone, Copy)]
enum ResourceNames {
    /// ResourceQuota `hard`.
    Quota,
    /// LimitRange items of type Container and Pod.
    Container,
    /// LimitRange items of other types.
    Standard,
}

impl ResourceNames {
    fn for_limit(type_: &LimitType) -> ResourceNames {
        match type_ {
            LimitType::Container | LimitType::Pod => ResourceNames::Container,
            _ => ResourceNames::Standard,
        }
    }

    /// Why the API server would refuse `name` here, if it would.
    fn refuses(self, name: &str) -> Option<&'static str> {
        const COMPUTE: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];
        const REQUESTS_AND_LIMITS: [&str; 7] = [
            "requests.cpu",
            "requests.memory",
            "requests.ephemeral-storage",
            "requests.storage",
            "limits.cpu",
            "limits.memory",
            "limits.ephemeral-storage",
        ];
        if name.contains('/') {
            return match self {
                ResourceNames::Container if name.starts_with("requests.") => {
                    Some("an extended resource name must not start with \"requests.\"")
                }
                _ => None,
            };
        }
        let huge_pages = name.starts_with("hugepages-");
        let known = match self {
            ResourceNames::Container => COMPUTE.contains(&name) || huge_pages,
            ResourceNames::Quota => {
                COMPUTE.contains(&name)
                    || REQUESTS_AND_LIMITS.contains(&name)
                    || COUNTED.contains(&name)
                    || huge_pages
                    || name.starts_with("requests.hugepages-")
            }
            ResourceNames::Standard => {
                COMPUTE.contains(&name)
                    || REQUESTS_AND_LIMITS.contains(&name)
                    || COUNTED.contains(&name)
                    || name == "storage"
                    || huge_pages
            }
        };
        (!known).then_some(match self {
            ResourceNames::Container => {
                "is not a resource of containers (cpu, memory, ephemeral-storage, hugepages-*, or a fully qualified extended resource)"
            }
            ResourceNames::Quota => {
                "is not a resource a quota can limit (such as pods, requests.cpu, limits.memory, or a fully qualified name such as count/deployments.apps)"
            }
            ResourceNames::Standard => {
                "is not a standard resource name (such as storage, or a fully qualified name)"
            }
        })
    }
}

/// Objects a quota counts: the API server takes only whole numbers of them.
const COUNTED: [&str; 9] = [
    "pods",
    "resourcequotas",
    "replicationcontrollers",
    "services",
    "services.nodeports",
    "services.loadbalancers",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
];

/// Whether the API server takes only whole numbers of `name`: objects counted by a quota, and
/// extended resources (a qualified name outside kubernetes.io).
fn is_integer_resource(name: &str) -> bool {
    COUNTED.contains(&name)
        || (name.contains('/')
            && !name.contains("kubernetes.io/")
            && !name.starts_with("requests."))
}

fn validate_quantities<'a>(
    items: impl Iterator<Item = (&'a String, &'a String)>,
    names: ResourceNames,
    path: &str,
    errors: &mut Errors,
) -> Vec<(&'a str, Quantity)> {
    let mut parsed = Vec::new();
    for (resource, value) in items {
        let item_path = format!("{path}[{resource:?}]");
        if !is_label_key(resource) {
            errors.add(&item_path, "is not a valid resource name");
        } else if let Some(why) = names.refuses(resource) {
            errors.add(&item_path, why);
        }
        match Quantity::parse(value) {
            Ok(q) if q.is_negative() => {
                errors.add(&item_path, format!("{value:?} must not be negative"))
            }
            Ok(q) if is_integer_resource(resource) && !q.is_integer() => {
                errors.add(&item_path, format!("{value:?} must be a whole number"))
            }
            // The API server checks whole numbers in thousandths of an int64.
            Ok(q)
                if is_integer_resource(resource)
                    && Quantity::parse("9223372036854775").is_ok_and(|max| q > max) =>
            {
                errors.add(&item_path, format!("{value:?} is too large"))
            }
            Ok(q) => parsed.push((resource.as_str(), q)),
            Err(e) => errors.add(&item_path, e.to_string()),
        }
    }
    parsed
}

/// The API server's own LimitRange rules, checked here so a bad item is an InvalidSpec condition
/// rather than an apply failure in every namespace.
fn validate_limit(item: &LimitSpec, path: &str, errors: &mut Errors) {
    let names = ResourceNames::for_limit(&item.type_);
    let default = validate_quantities(
        item.default.iter(),
        names,
        &format!("{path}.default"),
        errors,
    );
    let default_request = validate_quantities(
        item.default_request.iter(),
        names,
        &format!("{path}.defaultRequest"),
        errors,
    );
    let max = validate_quantities(item.max.iter(), names, &format!("{path}.max"), errors);
    let min = validate_quantities(item.min.iter(), names, &format!("{path}.min"), errors);
    validate_quantities(
        item.max_limit_request_ratio.iter(),
        names,
        &format!("{path}.maxLimitRequestRatio"),
        errors,
    );
    if item.type_ == LimitType::PersistentVolumeClaim
        && !item.min.contains_key("storage")
        && !item.max.contains_key("storage")
    {
        errors.add(
            path,
            "type PersistentVolumeClaim needs a min or max for storage",
        );
    }
    if item.type_ == LimitType::Pod && !(item.default.is_empty() && item.default_request.is_empty())
    {
        errors.add(
            path,
            "default and defaultRequest are not allowed for type Pod",
        );
    }
    let lookup = |list: &[(&str, Quantity)], key: &str| {
        list.iter().find(|(k, _)| *k == key).map(|(_, q)| *q)
    };
    for (resource, request) in &default_request {
        if let Some(limit) = lookup(&default, resource)
            && *request > limit
        {
            errors.add(
                format!("{path}.defaultRequest[{resource:?}]"),
                format!("{request} is more than the default limit {limit}"),
            );
        }
    }
    for (resource, low) in &min {
        if let Some(high) = lookup(&max, resource)
            && *low > high
        {
            errors.add(
                format!("{path}.min[{resource:?}]"),
                format!("{low} is more than max {high}"),
            );
        }
    }
    for (resource, value) in default.iter().chain(&default_request) {
        if let Some(high) = lookup(&max, resource)
            && *value > high
        {
            errors.add(
                format!("{path}.max[{resource:?}]"),
                format!("{high} is less than the default {value}"),
            );
        }
        if let Some(low) = lookup(&min, resource)
            && *value < low
        {
            errors.add(
                format!("{path}.min[{resource:?}]"),
                format!("{low} is more than the default {value}"),
            );
        }
    }
}

fn is_psa_version(v: &str) -> bool {
    v == "latest"
        || v.strip_prefix("v1.").is_some_and(|minor| {
            !minor.is_empty()
                && minor.len() <= 3
                && minor.bytes().all(|b| b.is_ascii_digit())
                && !minor.starts_with('0')
                && minor.parse::<u32>().is_ok_and(|m| m >= PSA_VERSION_FLOOR)
        })
}

/// RFC 1123 label: what namespace names are.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: what most object names are.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// A qualified name with an optional DNS-subdomain prefix, as label keys and resource names are.
fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, s),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::parse_baselines;

    fn errors_of(spec_yaml: &str) -> Vec<String> {
        let text = format!(
            "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: test}}\nspec:\n{spec_yaml}"
        );
        let baseline = parse_baselines(&text).expect("parses").remove(0);
        match validate(&baseline) {
            Ok(_) => vec![],
            Err(invalid) => invalid.errors.into_iter().map(|e| e.path).collect(),
        }
    }

    #[test]
    fn a_full_baseline_is_valid() {
        let errors = errors_of(
            "  networkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true, allowSameNamespace: true}\n  podSecurity: {enforce: restricted, version: v1.33}\n  rbac:\n    roles:\n    - name: viewer\n      rules: [{apiGroups: [''], resources: [pods], verbs: [get, list]}]\n      subjects: [{kind: Group, name: 'team-${namespace}'}, {kind: ServiceAccount, name: ci, namespace: '${namespace}'}]\n  resourceQuota: {hard: {pods: '10', requests.cpu: 2}}\n  limitRange: {limits: [{type: Container, default: {cpu: 500m}, defaultRequest: {cpu: 100m}, max: {cpu: '1'}}]}\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn each_problem_names_its_field() {
        let cases = [
            (
                "  networkPolicy: {defaultDeny: [Ingress], allowDNS: true}\n",
                "spec.networkPolicy.allowDNS",
            ),
            (
                "  networkPolicy: {allowSameNamespace: true}\n",
                "spec.networkPolicy.allowSameNamespace",
            ),
            (
                "  networkPolicy: {defaultDeny: [Egress, Egress]}\n",
                "spec.networkPolicy.defaultDeny",
            ),
            (
                "  podSecurity: {version: v2.0}\n",
                "spec.podSecurity.version",
            ),
            (
                "  excludedNamespaces: [Bad_Name]\n",
                "spec.excludedNamespaces[0]",
            ),
            (
                "  rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: ['*']}]}]}\n",
                "spec.rbac.roles[0].rules[0].verbs",
            ),
            (
                "  rbac: {roles: [{name: r, rules: [{apiGroups: ['*'], resources: [pods], verbs: [get]}]}]}\n",
                "spec.rbac.roles[0].rules[0].apiGroups",
            ),
            (
                "  rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [roles], verbs: [escalate]}]}]}\n",
                "spec.rbac.roles[0].rules[0].verbs",
            ),
            (
                "  rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: []}]}]}\n",
                "spec.rbac.roles[0].rules[0].verbs",
            ),
            (
                "  rbac: {roles: [{name: r, rules: []}]}\n",
                "spec.rbac.roles[0].rules",
            ),
            (
                "  rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}], subjects: [{kind: Group, name: '${team}'}]}]}\n",
                "spec.rbac.roles[0].subjects[0].name",
            ),
            (
                "  rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}], subjects: [{kind: User, name: u, namespace: x}]}]}\n",
                "spec.rbac.roles[0].subjects[0].namespace",
            ),
            (
                "  rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]}, {name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]}]}\n",
                "spec.rbac.roles[1].name",
            ),
            (
                "  rbac: {roles: [{name: Bad, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]}]}\n",
                "spec.rbac.roles[0].name",
            ),
            (
                "  resourceQuota: {hard: {cpu: lots}}\n",
                "spec.resourceQuota.hard[\"cpu\"]",
            ),
            (
                "  resourceQuota: {hard: {pods: '-1'}}\n",
                "spec.resourceQuota.hard[\"pods\"]",
            ),
            ("  resourceQuota: {hard: {}}\n", "spec.resourceQuota.hard"),
            // What the API server refuses in the objects we would render (found by
            // tests/round_trip.rs): resource names, whole numbers, a PVC item without storage.
            (
                "  resourceQuota: {hard: {v11-31: '1'}}\n",
                "spec.resourceQuota.hard[\"v11-31\"]",
            ),
            (
                "  resourceQuota: {hard: {pods: 500m}}\n",
                "spec.resourceQuota.hard[\"pods\"]",
            ),
            (
                "  resourceQuota: {hard: {pods: '99999999999999999999999'}}\n",
                "spec.resourceQuota.hard[\"pods\"]",
            ),
            (
                "  limitRange: {limits: [{type: Container, default: {pods: '1'}}]}\n",
                "spec.limitRange.limits[0].default[\"pods\"]",
            ),
            (
                "  limitRange: {limits: [{type: PersistentVolumeClaim, default: {storage: 1Gi}}]}\n",
                "spec.limitRange.limits[0]",
            ),
            (
                "  limitRange: {limits: [{type: Container, default: {cpu: 100m}, defaultRequest: {cpu: 200m}}]}\n",
                "spec.limitRange.limits[0].defaultRequest[\"cpu\"]",
            ),
            (
                "  limitRange: {limits: [{type: Pod, default: {cpu: 1}}]}\n",
                "spec.limitRange.limits[0]",
            ),
            (
                "  limitRange: {limits: [{type: Container, min: {cpu: 2}, max: {cpu: 1}}]}\n",
                "spec.limitRange.limits[0].min[\"cpu\"]",
            ),
            (
                "  namespaceSelector: {matchExpressions: [{key: team, operator: Has}]}\n",
                "spec.namespaceSelector.matchExpressions[0].operator",
            ),
            (
                "  namespaceSelector: {matchExpressions: [{key: team, operator: In}]}\n",
                "spec.namespaceSelector.matchExpressions[0].values",
            ),
            (
                "  namespaceSelector: {matchLabels: {'bad key!': x}}\n",
                "spec.namespaceSelector.matchLabels[\"bad key!\"]",
            ),
        ];
        for (spec, path) in cases {
            let errors = errors_of(spec);
            assert!(
                errors.iter().any(|e| e == path),
                "{spec}: expected {path}, got {errors:?}"
            );
        }
    }

    #[test]
    fn wildcards_and_privileged_verbs_can_be_opted_into() {
        let errors = errors_of(
            "  rbac: {roles: [{name: admin, allowWildcards: true, allowPrivilegedVerbs: true, rules: [{apiGroups: ['*'], resources: ['*'], verbs: ['*', bind]}]}]}\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn name_rules() {
        assert!(is_dns_label("team-a"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label("A"));
        assert!(is_dns_subdomain("a.b-c"));
        assert!(is_label_key("pod-security.kubernetes.io/enforce"));
        assert!(is_label_key("requests.cpu"));
        assert!(!is_label_key("/x"));
        assert!(is_psa_version("v1.33") && is_psa_version("latest") && !is_psa_version("v1."));
        assert!(is_psa_version("v1.30") && is_psa_version("v1.100"));
        assert!(!is_psa_version("v1.29") && !is_psa_version("v1.0") && !is_psa_version("v1.030"));
    }
}
