//! Decodes the SecurityBaseline watch one object at a time. A typed watch fails as a whole when
//! one stored object does not decode (a CRD edited by hand, a newer version's data), which would
//! leave every baseline unenforced; here such an object is set aside and reported instead.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::watcher::Event;
use parking_lot::{Mutex, MutexGuard};

use crate::api::SecurityBaseline;
use crate::engine::{FieldError, InvalidSpec};

/// A stored baseline that could not be decoded: what we know of it, and why.
#[derive(Clone, Debug)]
pub struct Undecodable {
    /// Its metadata (and status, if that decodes) with an empty spec: enough to report on it.
    pub placeholder: SecurityBaseline,
    pub error: InvalidSpec,
}

/// The baselines set aside, by name. They select nothing and their objects stay where they are,
/// as with any invalid baseline, until they decode again.
#[derive(Debug, Default)]
pub struct UndecodableBaselines(Mutex<BTreeMap<String, Undecodable>>);

impl UndecodableBaselines {
    pub fn contains(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }

    pub fn list(&self) -> Vec<Undecodable> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Undecodable>> {
        self.0.lock()
    }

    /// The typed event for a raw one, or None when there is nothing to pass on.
    pub fn decode(&self, event: Event<DynamicObject>) -> Option<Event<SecurityBaseline>> {
        match event {
            Event::Init => {
                // A relist follows: whatever is still undecodable is found again.
                self.lock().clear();
                Some(Event::Init)
            }
            Event::InitDone => Some(Event::InitDone),
            Event::InitApply(raw) => self.applied(raw).ok().map(Event::InitApply),
            Event::Apply(raw) => Some(match self.applied(raw) {
                Ok(baseline) => Event::Apply(baseline),
                // Drop any earlier, decodable version from the cache: it no longer says what the
                // stored object says.
                Err(placeholder) => Event::Delete(*placeholder),
            }),
            Event::Delete(raw) => {
                self.lock().remove(&raw.name_any());
                Some(Event::Delete(
                    decode(&raw).unwrap_or_else(|undecodable| undecodable.placeholder),
                ))
            }
        }
    }

    /// The decoded baseline, or (when it does not decode) its placeholder, remembered.
    fn applied(&self, raw: DynamicObject) -> Result<SecurityBaseline, Box<SecurityBaseline>> {
        let name = raw.name_any();
        match decode(&raw) {
            Ok(baseline) => {
                self.lock().remove(&name);
                Ok(baseline)
            }
            Err(undecodable) => {
                let error = &undecodable.error;
                tracing::warn!(baseline = name, %error, "cannot decode a SecurityBaseline");
                let placeholder = Box::new(undecodable.placeholder.clone());
                self.lock().insert(name, *undecodable);
                Err(placeholder)
            }
        }
    }
}

/// Decodes one stored baseline; when it cannot, a placeholder with its metadata (and status, if
/// that decodes) and an error naming the field.
pub fn decode(raw: &DynamicObject) -> Result<SecurityBaseline, Box<Undecodable>> {
    let value = serde_json::to_value(raw).unwrap_or_default();
    serde_path_to_error::deserialize::<_, SecurityBaseline>(value).map_err(|e| {
        let mut placeholder = SecurityBaseline::new(&raw.name_any(), Default::default());
        placeholder.metadata = raw.metadata.clone();
        placeholder.status = raw
            .data
            .get("status")
            .and_then(|s| serde_json::from_value(s.clone()).ok());
        let error = InvalidSpec {
            baseline: raw.name_any(),
            errors: vec![FieldError {
                path: e.path().to_string(),
                message: format!("cannot be read: {}", e.inner()),
            }],
        };
        Box::new(Undecodable { placeholder, error })
    })
}
