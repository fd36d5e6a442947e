//! Exemptions: controls a baseline does not enforce in some namespaces, for a stated reason and
//! until a stated time at most a year ahead, or, said out loud, for good. They live in the
//! cluster-scoped baseline, never in anything a tenant can write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema::{date_time_schema, dns_label_list_schema};

/// Controls not enforced in some namespaces.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.namespaces) && size(self.namespaces) > 0) || has(self.namespaceSelector)").message("an exemption needs namespaces or a namespaceSelector").reason(Reason::FieldValueRequired))]
#[x_kube(validation = Rule::new("(has(self.controls) && size(self.controls) > 0) || (has(self.roles) && size(self.roles) > 0)").message("an exemption needs controls or roles: what is not enforced").field_path(".controls").reason(Reason::FieldValueRequired))]
#[x_kube(validation = Rule::new("has(self.expiresAt) != (has(self.permanent) && self.permanent)").message("an exemption needs expiresAt (at most 365 days ahead) or permanent: true, not both").field_path(".expiresAt").reason(Reason::FieldValueRequired))]
pub struct Exemption {
    /// Namespaces exempt, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "dns_label_list_schema")]
    pub namespaces: Vec<String>,
    /// Namespaces exempt, by labels. Anyone who may label a namespace can make it match: use
    /// only with labels tenants cannot set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// What is not enforced there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = Control::ALL.len()))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub controls: Vec<Control>,
    /// Roles of `rbac.roles` not enforced there, by name (`controls: [Roles]` exempts them all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 63)))]
    pub roles: Vec<String>,
    /// Why: shown in the status, `check` and Events.
    #[schemars(length(min = 1, max = 512))]
    pub reason: String,
    /// When enforcement resumes by itself (RFC 3339, e.g. 2026-12-31T00:00:00Z), at most 365
    /// days ahead when written. Required unless `permanent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub expires_at: Option<Time>,
    /// True for an exemption without end, instead of `expiresAt`: listed as permanent in the
    /// status and by `check`, so that a hole nobody meant to keep does not look green forever.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub permanent: bool,
}

impl Exemption {
    /// The longest an exemption may run from when it is written: a year.
    pub const MAX_DAYS: i64 = 365;
}

/// A control a baseline enforces, as exemptions name it.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum Control {
    /// Every NetworkPolicy of the baseline (default-deny and allows).
    NetworkPolicy,
    /// The Pod Security labels.
    PodSecurity,
    /// Every Role and RoleBinding of the baseline.
    Roles,
    /// The ResourceQuota.
    ResourceQuota,
    /// The LimitRange.
    LimitRange,
    /// The default ServiceAccount's token setting.
    ServiceAccount,
}

impl Control {
    /// Every control, in the order of the enum.
    pub const ALL: [Control; 6] = [
        Control::NetworkPolicy,
        Control::PodSecurity,
        Control::Roles,
        Control::ResourceQuota,
        Control::LimitRange,
        Control::ServiceAccount,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Control::NetworkPolicy => "NetworkPolicy",
            Control::PodSecurity => "PodSecurity",
            Control::Roles => "Roles",
            Control::ResourceQuota => "ResourceQuota",
            Control::LimitRange => "LimitRange",
            Control::ServiceAccount => "ServiceAccount",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Control;

    /// `ALL` is the enum: every variant its schema names, once, in order, named in JSON as
    /// `as_str` names it.
    #[test]
    fn all_lists_every_control_of_the_schema_once() {
        let schema = serde_json::to_value(schemars::schema_for!(Control)).unwrap();
        let variants: Vec<String> = schema["enum"]
            .as_array()
            .or_else(|| schema["oneOf"].as_array())
            .expect("an enum schema")
            .iter()
            .flat_map(|v| {
                // A plain name, or a variant with its doc comment: `const` or `enum` beside it.
                [v.clone(), v["const"].clone()]
                    .into_iter()
                    .chain(v["enum"].as_array().cloned().unwrap_or_default())
                    .filter_map(|n| n.as_str().map(String::from))
                    .collect::<Vec<_>>()
            })
            .collect();
        let listed: Vec<&str> = Control::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(variants, listed);
        for control in Control::ALL {
            assert_eq!(serde_json::to_value(control).unwrap(), control.as_str());
        }
    }
}
