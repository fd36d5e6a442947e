//! Decodes the SecurityBaseline watch one object at a time. A typed watch fails as a whole when
//! one stored object does not decode (a CRD edited by hand, a newer version's data), which would
//! leave every baseline unenforced; here such an object is replaced by a stand-in instead.
//! The stand-in stays in the store, marked `status.unreadable`: a baseline that exists but cannot
//! be read is an invalid baseline, enforcing its last valid generation, never a deleted one
//! (dropping it from the store would let the admission keeper delete its policies).

use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::watcher::Event;

use crate::api::{SecurityBaseline, SecurityBaselineStatus, Unreadable};
use crate::engine::{FieldError, InvalidSpec};

/// A stored baseline that could not be decoded: what we know of it, and why.
#[derive(Clone, Debug)]
pub struct Undecodable {
    /// Its metadata (and status, if that decodes) with an empty spec, marked unreadable.
    pub placeholder: SecurityBaseline,
    pub error: InvalidSpec,
}

/// The typed event for a raw one, with a stand-in for each object that does not decode.
pub fn decode_event(event: Event<DynamicObject>) -> Event<SecurityBaseline> {
    match event {
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
        Event::InitApply(raw) => Event::InitApply(applied(raw)),
        Event::Apply(raw) => Event::Apply(applied(raw)),
        Event::Delete(raw) => {
            Event::Delete(decode(&raw).unwrap_or_else(|undecodable| undecodable.placeholder))
        }
    }
}

/// The decoded baseline, or (when it does not decode) its stand-in.
fn applied(raw: DynamicObject) -> SecurityBaseline {
    decode(&raw).unwrap_or_else(|undecodable| {
        let error = &undecodable.error;
        tracing::warn!(baseline = raw.name_any(), %error, "cannot decode a SecurityBaseline");
        undecodable.placeholder
    })
}

/// Why the stand-in `baseline` stands in, if it is one: the field that does not decode.
pub fn unreadable(baseline: &SecurityBaseline) -> Option<InvalidSpec> {
    let unreadable = baseline.status.as_ref()?.unreadable.as_ref()?;
    Some(InvalidSpec {
        baseline: baseline.name_any(),
        errors: vec![FieldError {
            path: unreadable.path.clone(),
            message: unreadable.message.clone(),
        }],
    })
}

/// Decodes one stored baseline; when it cannot, a placeholder with its metadata (and status, if
/// that decodes) and an error naming the field.
pub fn decode(raw: &DynamicObject) -> Result<SecurityBaseline, Box<Undecodable>> {
    let value = serde_json::to_value(raw).unwrap_or_default();
    serde_path_to_error::deserialize::<_, SecurityBaseline>(value).map_err(|e| {
        let mut placeholder = SecurityBaseline::new(&raw.name_any(), Default::default());
        placeholder.metadata = raw.metadata.clone();
        let mut status: SecurityBaselineStatus = raw
            .data
            .get("status")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .unwrap_or_default();
        let field = Unreadable {
            path: e.path().to_string(),
            message: format!("cannot be read: {}", e.inner()),
        };
        let error = InvalidSpec {
            baseline: raw.name_any(),
            errors: vec![FieldError {
                path: field.path.clone(),
                message: field.message.clone(),
            }],
        };
        status.unreadable = Some(field);
        placeholder.status = Some(status);
        Box::new(Undecodable { placeholder, error })
    })
}
