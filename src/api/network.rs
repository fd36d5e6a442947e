//! What a default-deny lets through: where DNS is, and named allow rules by namespace name,
//! namespace labels, pod labels or address block, with ports.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::PolicyType;

/// Names an allow rule may not take: the baseline's own allow policies use them.
pub const RESERVED_ALLOW_NAMES: [&str; 3] = ["dns", "same-namespace", "api-server"];

/// Where the cluster's DNS is, for `allowDNS`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.provider != 'Custom' || (has(self.peers) && size(self.peers) > 0)").message("provider Custom needs peers: where DNS is").field_path(".peers").reason(Reason::FieldValueRequired))]
#[x_kube(validation = Rule::new("!has(self.peers) || self.provider == 'Custom'").message("peers are only for provider Custom").field_path(".peers").reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("!has(self.nodeLocalAddress) || self.provider == 'NodeLocalDNSCache'").message("nodeLocalAddress is only for provider NodeLocalDNSCache").field_path(".nodeLocalAddress").reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("!has(self.nodeLocalAddress) || isIP(self.nodeLocalAddress)").message("nodeLocalAddress must be an IP address").field_path(".nodeLocalAddress").reason(Reason::FieldValueInvalid))]
pub struct DnsSpec {
    /// KubeDNS (default): UDP and TCP 53 to the k8s-app=kube-dns pods in kube-system (CoreDNS
    /// carries that label too). NodeLocalDNSCache: UDP and TCP 53 to the node-local cache's
    /// link-local address only. OpenShift: UDP and TCP 5353 to the DNS pods in openshift-dns.
    /// Custom: `peers` and `ports`.
    #[serde(default)]
    pub provider: DnsProvider,
    /// NodeLocalDNSCache: the address the cache listens on. Default 169.254.20.10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 45))]
    pub node_local_address: Option<String>,
    /// Custom: where DNS is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub peers: Vec<AllowPeer>,
    /// Custom: its ports. Default UDP and TCP 53.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub ports: Vec<AllowPort>,
}

/// Which DNS the cluster runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DnsProvider {
    /// kube-dns or CoreDNS pods labelled k8s-app=kube-dns in kube-system.
    #[default]
    KubeDNS,
    /// NodeLocal DNSCache on each node, at a link-local address.
    NodeLocalDNSCache,
    /// OpenShift's DNS operator: pods in openshift-dns on port 5353.
    OpenShift,
    /// Peers and ports given in full.
    Custom,
}

/// One allow rule: traffic the default-deny lets through in one direction, rendered as its own
/// NetworkPolicy `zt-<baseline>-allow-<name>` selecting every pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(self.name in ['dns', 'same-namespace', 'api-server'])").message("dns, same-namespace and api-server are the names of the baseline's own allow policies").field_path(".name").reason(Reason::FieldValueForbidden))]
pub struct AllowRule {
    /// Suffix of the NetworkPolicy's name: lowercase letters, digits and '-'.
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Ingress (traffic in from the peers) or Egress (traffic out to them); a direction the
    /// default-deny denies.
    pub direction: PolicyType,
    /// Who is let through.
    #[schemars(length(min = 1, max = 32))]
    pub peers: Vec<AllowPeer>,
    /// On which ports; none listed: every port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub ports: Vec<AllowPort>,
}

/// Who an allow rule lets through: pods in a namespace named exactly (safe), in namespaces with
/// some labels (spoofable wherever tenants may label their namespaces), in the namespace itself,
/// or an address block.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.__namespace__) || has(self.namespaceSelector) || has(self.pods) || has(self.cidr)").message("a peer needs namespace, namespaceSelector, pods or cidr").reason(Reason::FieldValueRequired))]
#[x_kube(validation = Rule::new("!(has(self.__namespace__) && has(self.namespaceSelector))").message("namespace and namespaceSelector exclude each other").field_path(".namespaceSelector").reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("!has(self.cidr) || !(has(self.__namespace__) || has(self.namespaceSelector) || has(self.pods))").message("cidr excludes namespace, namespaceSelector and pods").field_path(".cidr").reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("!has(self.except) || has(self.cidr)").message("except is only for cidr").field_path(".except").reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("!has(self.cidr) || isCIDR(self.cidr)").message("cidr must be an address block such as 10.0.0.0/8").field_path(".cidr").reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("!has(self.except) || !has(self.cidr) || !isCIDR(self.cidr) || self.except.all(e, isCIDR(e) && cidr(self.cidr).containsCIDR(e))").message("each except must be an address block within cidr").field_path(".except").reason(Reason::FieldValueInvalid))]
pub struct AllowPeer {
    /// Pods in the namespace of this name, matched on its `kubernetes.io/metadata.name` label,
    /// which the API server sets and nobody can change: no tenant gets in by imitation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,
    /// Pods in the namespaces with these labels. Anyone who may label a namespace can make it
    /// match: use only with labels tenants cannot set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Only the pods with these labels (in the namespaces above; alone, in the namespace itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<LabelSelector>,
    /// Addresses in this block, e.g. 10.0.0.0/8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 49))]
    pub cidr: Option<String>,
    /// Blocks within `cidr` left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 49)))]
    pub except: Vec<String>,
}

/// A port, or a range of ports, of one protocol.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.endPort) || (has(self.port) && type(self.port) == int && self.endPort >= self.port)").message("endPort needs a numeric port no greater than it").field_path(".endPort").reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("!has(self.port) || (type(self.port) == int ? (self.port >= 1 && self.port <= 65535) : (size(self.port) >= 1 && size(self.port) <= 15))").message("port is a number from 1 to 65535 or a port name of at most 15 characters").field_path(".port").reason(Reason::FieldValueInvalid))]
// The characters of a port name are checked by the operator's validation (InvalidSpec naming
// the field): a regular expression on a string of unbounded length exceeds the CRD's CEL budget.
pub struct AllowPort {
    /// TCP (default), UDP or SCTP.
    #[serde(default)]
    pub protocol: Protocol,
    /// A port number or a named container port; absent: every port of the protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    /// The last port of a range starting at `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub end_port: Option<i32>,
}

/// A transport protocol.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Protocol {
    #[default]
    TCP,
    UDP,
    SCTP,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::TCP => "TCP",
            Protocol::UDP => "UDP",
            Protocol::SCTP => "SCTP",
        }
    }
}
