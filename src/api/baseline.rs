//! The `SecurityBaseline` custom resource: the contract users write and `kubectl get` shows.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema::{deserialize_quantity_map, dns_label_list_schema, quantity_map_schema};
use super::{AllowRule, DnsSpec, Exemption};

/// Most drift records a status carries; the rest are counted, and reported in Events and metrics.
pub const MAX_STATUS_DRIFT: usize = 20;

/// Zero-trust defaults for every selected namespace: default-deny NetworkPolicies, Pod Security
/// Admission labels, least-privilege Roles, a ResourceQuota and a LimitRange.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "zerotrust.dev",
    version = "v1alpha1",
    kind = "SecurityBaseline",
    plural = "securitybaselines",
    singular = "securitybaseline",
    shortname = "sbl",
    category = "zerotrust",
    status = "SecurityBaselineStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A SecurityBaseline puts zero-trust defaults into every namespace it selects and keeps them there.",
    validation = Rule::new("size(self.metadata.name) <= 63").message("metadata.name must be at most 63 characters: it becomes a label value and part of generated object names"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode", description = "Enforce repairs drift; Audit only reports it"),
    printcolumn(name = "Selected", type_ = "integer", json_path = ".status.selectedNamespaces", description = "Namespaces this baseline selects"),
    printcolumn(name = "Compliant", type_ = "integer", json_path = ".status.compliantNamespaces", description = "Selected namespaces that match the baseline"),
    printcolumn(name = "Drifted", type_ = "integer", json_path = ".status.driftedNamespaces", description = "Selected namespaces that differ from the baseline"),
    printcolumn(name = "Exempt", type_ = "integer", json_path = ".status.exemptNamespaces", description = "Selected namespaces with a control exempt"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Whether the baseline is valid and fully applied"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct SecurityBaselineSpec {
    /// Enforce (default) creates and repairs the generated objects; Audit only detects and reports
    /// drift, and never writes to a namespace.
    #[serde(default)]
    pub mode: Mode,

    /// Which namespaces get this baseline. Absent selects every namespace. kube-system,
    /// kube-public, kube-node-lease and the operator's own namespace are never selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Namespaces never touched, whatever the selector says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "dns_label_list_schema")]
    pub excluded_namespaces: Vec<String>,

    /// Default-deny NetworkPolicies and the explicit allows that make them livable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySpec>,

    /// Pod Security Admission labels set on each selected Namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security: Option<PodSecuritySpec>,

    /// Least-privilege Roles, each bound to its subjects by a RoleBinding of the same name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rbac: Option<RbacSpec>,

    /// One ResourceQuota per namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_quota: Option<ResourceQuotaSpec>,

    /// One LimitRange per namespace, giving pods defaults so the quota does not reject them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_range: Option<LimitRangeSpec>,

    /// Settings for the namespace's existing ServiceAccounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountsSpec>,

    /// What happens to generated objects when this baseline is deleted or a namespace stops
    /// matching. Orphan (default) leaves the security controls in place; Delete removes exactly
    /// the objects this baseline created.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// What to do with a same-named object this operator did not create. Report (default) leaves it
    /// untouched and reports a conflict; Adopt takes it over and makes it match the baseline.
    #[serde(default)]
    pub conflict_policy: ConflictPolicy,

    /// Controls not enforced in some namespaces, each with a reason and usually an expiry.
    /// Exempt controls are reported as exempt, neither compliant nor drift; the admission
    /// policies honour the same exemptions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub exemptions: Vec<Exemption>,
}

/// Whether drift is repaired or only reported.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Mode {
    /// Create the generated objects and repair drift.
    #[default]
    Enforce,
    /// Detect and report drift; never write to a namespace.
    Audit,
}

/// What happens to generated objects when they are no longer wanted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Leave the objects in place (security controls never silently disappear).
    #[default]
    Orphan,
    /// Delete exactly the objects this baseline created.
    Delete,
}

/// What to do with a same-named object this operator did not create.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConflictPolicy {
    /// Leave it untouched and report the conflict.
    #[default]
    Report,
    /// Take it over: label it as ours and make it match the baseline.
    Adopt,
}

/// A direction of traffic that a NetworkPolicy isolates.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum PolicyType {
    /// Traffic into the namespace's pods.
    Ingress,
    /// Traffic out of the namespace's pods.
    Egress,
}

impl PolicyType {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyType::Ingress => "Ingress",
            PolicyType::Egress => "Egress",
        }
    }
}

/// Default-deny NetworkPolicies and the explicit allows that make them livable.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.allowDNS) || !self.allowDNS || (has(self.defaultDeny) && 'Egress' in self.defaultDeny)").message("allowDNS needs Egress in defaultDeny: without an egress deny there is nothing to allow, and the allow policy would itself isolate egress").field_path(".allowDNS").reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("!has(self.allowSameNamespace) || !self.allowSameNamespace || (has(self.defaultDeny) && size(self.defaultDeny) > 0)").message("allowSameNamespace needs defaultDeny: without a deny there is nothing to allow").field_path(".allowSameNamespace").reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("!has(self.dns) || (has(self.allowDNS) && self.allowDNS)").message("dns says where DNS is for allowDNS: set allowDNS: true").field_path(".dns").reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("!has(self.allowAPIServer) || !self.allowAPIServer || (has(self.defaultDeny) && 'Egress' in self.defaultDeny)").message("allowAPIServer needs Egress in defaultDeny").field_path(".allowAPIServer").reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("!has(self.allow) || self.allow.all(r, has(self.defaultDeny) && r.direction in self.defaultDeny)").message("each allow rule's direction must be one the default-deny denies: an allow policy isolates the direction it names").field_path(".allow").reason(Reason::FieldValueInvalid))]
pub struct NetworkPolicySpec {
    /// Directions to deny by default: one NetworkPolicy selecting all pods with these policyTypes
    /// and no rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub default_deny: Vec<PolicyType>,

    /// Allow egress to the cluster's DNS: by default UDP and TCP 53 to the k8s-app=kube-dns pods
    /// in kube-system; `dns` says where DNS is otherwise. Needs Egress in defaultDeny.
    #[serde(default, rename = "allowDNS")]
    pub allow_dns: bool,

    /// Where the cluster's DNS is, for allowDNS (NodeLocal DNSCache, OpenShift, custom).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsSpec>,

    /// Allow egress to the Kubernetes API server, at the addresses and ports the cluster's
    /// `kubernetes` Service and its EndpointSlices give (kept current when they change). Needs
    /// Egress in defaultDeny.
    #[serde(default, rename = "allowAPIServer")]
    pub allow_api_server: bool,

    /// Named allow rules, each rendered as its own NetworkPolicy `zt-<baseline>-allow-<name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub allow: Vec<AllowRule>,

    /// Allow pods in the namespace to talk to each other, in the denied directions.
    #[serde(default)]
    pub allow_same_namespace: bool,

    /// Refuse at admission, in selected namespaces, NetworkPolicies of others that let through
    /// what the default-deny denies: rules without peers, peers outside the namespace that the
    /// baseline does not allow itself, `0.0.0.0/0`. Off by default: tenants then may open their
    /// namespace, and the operator reports it as Widened drift.
    #[serde(default)]
    pub refuse_widening: bool,
}

/// A Pod Security Standard level, from least to most restrictive.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PodSecurityLevel {
    /// Unrestricted.
    Privileged,
    /// Prevents known privilege escalations.
    Baseline,
    /// Current pod hardening best practice.
    Restricted,
}

impl PodSecurityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            PodSecurityLevel::Privileged => "privileged",
            PodSecurityLevel::Baseline => "baseline",
            PodSecurityLevel::Restricted => "restricted",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "privileged" => Some(PodSecurityLevel::Privileged),
            "baseline" => Some(PodSecurityLevel::Baseline),
            "restricted" => Some(PodSecurityLevel::Restricted),
            _ => None,
        }
    }
}

/// Pod Security Admission labels (`pod-security.kubernetes.io/*`) for each selected Namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSecuritySpec {
    /// Level enforced: pods violating it are rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce: Option<PodSecurityLevel>,
    /// Level audited: violations are recorded in the audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<PodSecurityLevel>,
    /// Level warned about: violations return a warning to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn: Option<PodSecurityLevel>,
    /// Policy version for all three labels: `latest` or `v1.NN`, no older than v1.34 (older
    /// versions lack checks both levels have since gained, e.g. `host` in probes and lifecycle
    /// hooks). Absent means `latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^(latest|v1\.(3[4-9]|[4-9][0-9]|[1-9][0-9]{2}))$"),
        length(max = 16)
    )]
    pub version: Option<String>,
}

/// Least-privilege Roles, each with a RoleBinding.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RbacSpec {
    /// One Role and one RoleBinding per entry, named `zt-<baseline>-<name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub roles: Vec<RoleSpec>,
}

/// A namespace Role and the subjects it is bound to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.allowWildcards || self.rules.all(r, !('*' in r.verbs) && !('*' in r.resources) && !('*' in r.apiGroups))").message("'*' in verbs, resources or apiGroups is not least privilege; list them explicitly or set allowWildcards: true").field_path(".rules").reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("self.allowPrivilegedVerbs || self.rules.all(r, !r.verbs.exists(v, v in ['escalate', 'bind', 'impersonate']))").message("the verbs escalate, bind and impersonate let a subject gain more privileges; set allowPrivilegedVerbs: true to grant them").field_path(".rules").reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("self.allowSensitiveResources || self.rules.all(r, !r.resources.exists(x, x in ['secrets', 'pods/exec', 'pods/attach', 'serviceaccounts/token', 'nodes/proxy']))").message("secrets, pods/exec, pods/attach, serviceaccounts/token and nodes/proxy are what attackers look for; set allowSensitiveResources: true to grant them").field_path(".rules").reason(Reason::FieldValueForbidden))]
pub struct RoleSpec {
    /// Suffix of the generated Role and RoleBinding names. Lowercase letters, digits and '-'.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// The Role's rules: explicit apiGroups, resources and verbs.
    #[schemars(length(min = 1, max = 64))]
    pub rules: Vec<RoleRule>,

    /// Who the Role is bound to. Names may contain `${namespace}`, replaced by the namespace's name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub subjects: Vec<RoleSubject>,

    /// Permit '*' in verbs, resources or apiGroups for this Role. Off by default: wildcards grant
    /// more than anyone can review.
    #[serde(default)]
    pub allow_wildcards: bool,

    /// Permit the verbs escalate, bind and impersonate for this Role. Off by default.
    #[serde(default)]
    pub allow_privileged_verbs: bool,

    /// Permit the resources attackers look for: secrets, pods/exec, pods/attach,
    /// serviceaccounts/token, nodes/proxy. Off by default.
    #[serde(default)]
    pub allow_sensitive_resources: bool,
}

/// One rule of a Role, as in rbac.authorization.k8s.io/v1 PolicyRule (without nonResourceURLs,
/// which a namespaced Role cannot grant).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleRule {
    /// API groups of the resources; "" is the core group.
    #[schemars(length(min = 1, max = 32), inner(length(max = 253)))]
    pub api_groups: Vec<String>,
    /// Resources, e.g. pods, deployments, pods/log.
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 253)))]
    pub resources: Vec<String>,
    /// Verbs, e.g. get, list, watch, create, update, patch, delete.
    #[schemars(length(min = 1, max = 16), inner(length(min = 1, max = 63)))]
    pub verbs: Vec<String>,
    /// Optional allow-list of object names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub resource_names: Vec<String>,
}

/// The kind of a RoleBinding subject.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SubjectKind {
    /// A user name as the authenticator reports it.
    User,
    /// A group name as the authenticator reports it.
    Group,
    /// A ServiceAccount; its namespace defaults to the namespace being configured.
    ServiceAccount,
}

/// A subject a Role is bound to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.__namespace__) || self.kind == 'ServiceAccount'").message("namespace is only for ServiceAccount subjects").field_path(".namespace").reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("!has(self.apiGroup) || (self.kind == 'ServiceAccount' ? self.apiGroup == '' : self.apiGroup == 'rbac.authorization.k8s.io')").message("apiGroup is rbac.authorization.k8s.io for User and Group subjects and empty for ServiceAccount subjects, as in a RoleBinding").field_path(".apiGroup").reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("!has(self.__namespace__) || self.__namespace__ == '${namespace}' || !self.__namespace__.contains('${')").message("a namespace may be exactly ${namespace} or a literal name: a template such as ${namespace}-ci hands the Role to whoever creates that namespace").field_path(".namespace").reason(Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase")]
pub struct RoleSubject {
    /// User, Group or ServiceAccount.
    pub kind: SubjectKind,
    /// The subject's name; `${namespace}` is replaced by the namespace's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// For ServiceAccount subjects only: its namespace; defaults to the namespace being configured.
    /// Either a literal name or exactly `${namespace}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// As in a RoleBinding's subject: rbac.authorization.k8s.io for User and Group, empty for
    /// ServiceAccount. Optional; accepted so a subject can be copied from a RoleBinding as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub api_group: Option<String>,
}

/// The hard limits of one ResourceQuota.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceQuotaSpec {
    /// Resource name (e.g. requests.cpu, limits.memory, pods) to its quantity.
    #[serde(deserialize_with = "deserialize_quantity_map")]
    #[schemars(schema_with = "quantity_map_schema")]
    pub hard: BTreeMap<String, String>,
}

/// The items of one LimitRange.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitRangeSpec {
    /// Limits by kind of object, as in core/v1 LimitRangeItem.
    #[schemars(length(min = 1, max = 8))]
    pub limits: Vec<LimitSpec>,
}

/// The kind of object a LimitRange item constrains.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum LimitType {
    /// Each container.
    Container,
    /// The sum over a pod's containers.
    Pod,
    /// Each PersistentVolumeClaim.
    PersistentVolumeClaim,
}

impl LimitType {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitType::Container => "Container",
            LimitType::Pod => "Pod",
            LimitType::PersistentVolumeClaim => "PersistentVolumeClaim",
        }
    }
}

/// One LimitRange item, as in core/v1 LimitRangeItem.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitSpec {
    /// Container, Pod or PersistentVolumeClaim.
    #[serde(rename = "type")]
    pub type_: LimitType,
    /// Default limits for containers that set none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[serde(deserialize_with = "deserialize_quantity_map")]
    #[schemars(schema_with = "quantity_map_schema")]
    pub default: BTreeMap<String, String>,
    /// Default requests for containers that set none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[serde(deserialize_with = "deserialize_quantity_map")]
    #[schemars(schema_with = "quantity_map_schema")]
    pub default_request: BTreeMap<String, String>,
    /// Maximum usage per object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[serde(deserialize_with = "deserialize_quantity_map")]
    #[schemars(schema_with = "quantity_map_schema")]
    pub max: BTreeMap<String, String>,
    /// Minimum usage per object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[serde(deserialize_with = "deserialize_quantity_map")]
    #[schemars(schema_with = "quantity_map_schema")]
    pub min: BTreeMap<String, String>,
    /// Maximum ratio of limit to request per resource.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[serde(deserialize_with = "deserialize_quantity_map")]
    #[schemars(schema_with = "quantity_map_schema")]
    pub max_limit_request_ratio: BTreeMap<String, String>,
}

/// Settings for the namespace's existing ServiceAccounts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountsSpec {
    /// When false, the namespace's `default` ServiceAccount gets
    /// `automountServiceAccountToken: false`, so pods get no API token unless they ask for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automount_default_token: Option<bool>,
}

/// What the operator observed; the same size however many namespaces exist.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityBaselineStatus {
    /// The spec generation these counts were computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, and conditions explaining problems: InvalidSpec, Conflict, Drifted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Namespaces this baseline selects.
    #[serde(default)]
    pub selected_namespaces: i32,
    /// Selected namespaces that match the baseline.
    #[serde(default)]
    pub compliant_namespaces: i32,
    /// Selected namespaces that differ from the baseline (drift or conflict).
    #[serde(default)]
    pub drifted_namespaces: i32,
    /// Selected namespaces with a control exempt (and no drift): neither compliant nor drifted.
    #[serde(default)]
    pub exempt_namespaces: i32,
    /// Repairs made since the baseline was created.
    #[serde(default)]
    pub repairs: i64,
    /// Up to 20 current drift records; `driftCount` has them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub drift: Vec<DriftRecord>,
    /// How many drift records exist in all, including those not listed in `drift`.
    #[serde(default)]
    pub drift_count: i32,
    /// The exemptions without end (`permanent: true`) of the generation enforced, by their index
    /// in `spec.exemptions`: holes someone chose to keep, listed so they never look green.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub permanent_exemptions: Vec<i32>,
    /// The last valid generation's spec: enforced while a newer edit is invalid or unreadable,
    /// across restarts and leader changes. Written by the operator only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_valid: Option<super::LastValidSpec>,
    /// The identity the admission policies are rendered for; `check` renders them alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission_identity: Option<super::AdmissionIdentityRecord>,
    /// Set, in memory only, on the stand-in for a stored baseline that does not decode.
    #[serde(skip)]
    #[schemars(skip)]
    pub unreadable: Option<super::Unreadable>,
}

/// One object or label that differs from the baseline.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftRecord {
    /// The namespace.
    pub namespace: String,
    /// Kind of the object (NetworkPolicy, Role, ..., or Namespace for its labels).
    pub kind: String,
    /// Name of the object, or the label key.
    pub name: String,
    /// What differs, e.g. Missing, Modified, Weakened, Conflict.
    pub reason: String,
}

impl SecurityBaselineSpec {
    pub fn pod_security_version(&self) -> &str {
        self.pod_security
            .as_ref()
            .and_then(|p| p.version.as_deref())
            .unwrap_or("latest")
    }
}
