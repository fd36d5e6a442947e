//! The API server's syntax rules: DNS labels and subdomains, label keys and values, and label
//! selectors.

use super::Errors;

/// A label selector's keys, values and operators, at `at`.
pub(super) fn validate_selector(
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

pub(super) fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// A qualified name with an optional DNS-subdomain prefix, as label keys and resource names are.
pub(super) fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, s),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}
