//! Quotas and limit ranges: resource names and quantities as the API server takes them, and its
//! own LimitRange rules.

use super::Errors;
use super::syntax::is_label_key;
use crate::api::{LimitRangeSpec, LimitSpec, LimitType, ResourceQuotaSpec};
use crate::engine::quantity::Quantity;

/// `spec.resourceQuota`: at least one resource, each a name and quantity the API server takes.
pub(super) fn validate_quota(quota: &ResourceQuotaSpec, errors: &mut Errors) {
    if quota.hard.is_empty() {
        errors.add("spec.resourceQuota.hard", "must list at least one resource");
    }
    validate_quantities(
        quota.hard.iter(),
        ResourceNames::Quota,
        "spec.resourceQuota.hard",
        errors,
    );
}

/// `spec.limitRange`: at least one item, each valid.
pub(super) fn validate_limit_range(limits: &LimitRangeSpec, errors: &mut Errors) {
    if limits.limits.is_empty() {
        errors.add("spec.limitRange.limits", "must have at least one item");
    }
    let mut seen = Vec::new();
    for (i, item) in limits.limits.iter().enumerate() {
        let path = format!("spec.limitRange.limits[{i}]");
        // The API server takes one item per type, and would refuse the whole LimitRange.
        if seen.contains(&item.type_) {
            let type_ = item.type_.as_str();
            errors.add(
                format!("{path}.type"),
                format!("{type_} appears twice: one item per type"),
            );
        }
        seen.push(item.type_);
        validate_limit(item, &path, errors);
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
