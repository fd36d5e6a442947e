//! The stored form of one cached object: its JSON reduced to what the operator reads (see
//! [`Held`]), kept in two parts shared between objects (see [`Stored`]), and put back together
//! when a reconcile reads it. The objects one baseline renders into 10,000 namespaces differ in
//! little more than their identity.

use std::collections::HashSet;
use std::sync::{Arc, Weak};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::Serialize;

use crate::engine::{
    BASELINE_LABEL, FIELD_MANAGER, MANAGED_BY_LABEL, Ownership, object_name, ownership,
};

/// What an index holds of each object. Everything it holds is bounded whoever wrote the object:
/// a tenant who copies our labels onto its own objects, or annotates them, cannot grow the cache
/// beyond a small stub per object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// Our generated objects whole, less the metadata the operator does not read (see
    /// `held_json`: annotations, labels other than ours, timestamps); anything else
    /// carrying our labels (not applied by us, or not named `zt-<its baseline>-...`) as a stub:
    /// identity, our labels, our managedFields entry. (Forging our field manager and our naming
    /// too would get an object held whole; in a namespace a baseline selects, the tamper
    /// protection refuses such an object.)
    Generated,
    /// `default` ServiceAccounts: identity and `automountServiceAccountToken` only.
    ServiceAccount,
    /// Already bounded by whoever builds it (e.g. the NetworkPolicy summaries).
    AsIs,
}

/// What an index can hold: a serializable object with metadata. Watched resources are, and so
/// is the engine's [`Object`](crate::engine::Object), which our writes return.
pub trait Cacheable: Serialize {
    fn metadata(&self) -> &ObjectMeta;
}

impl<K: Resource + Serialize> Cacheable for K {
    fn metadata(&self) -> &ObjectMeta {
        self.meta()
    }
}

impl Cacheable for crate::engine::Object {
    fn metadata(&self) -> &ObjectMeta {
        self.meta()
    }
}

/// One cached object: what the index needs to order versions, and its held JSON in two shared
/// parts. Its name and namespace are its key. At 10,000 namespaces the 100,000 objects' JSON was
/// 50 MiB held once per object, most of it the same few bodies and label sets over and over.
#[derive(Clone)]
pub(super) struct Stored {
    pub(super) uid: Option<String>,
    pub(super) resource_version: Option<String>,
    /// Seen as ours (our labels and field manager) at some version of this uid: it stays ours
    /// when someone takes the field manager off.
    pub(super) ours: bool,
    /// The held metadata less name, namespace, uid and resourceVersion: for our objects, our two
    /// labels and our field manager's name, the same for every object of a baseline.
    meta: Arc<[u8]>,
    /// The held object less its metadata: for most kinds, the same in every namespace.
    rest: Arc<[u8]>,
}

/// The metadata fields a [`Stored`] holds outside its JSON parts.
const IDENTITY: [&str; 4] = ["name", "namespace", "uid", "resourceVersion"];

impl Stored {
    /// The held metadata of the object at `(namespace, name)`, identity put back, as JSON.
    fn meta_json(&self, (namespace, name): (&str, &str)) -> serde_json::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.meta.len() + 128);
        out.push(b'{');
        let identity = [
            ("name", Some(name).filter(|n| !n.is_empty())),
            ("namespace", Some(namespace).filter(|n| !n.is_empty())),
            ("uid", self.uid.as_deref()),
            ("resourceVersion", self.resource_version.as_deref()),
        ];
        for (field, value) in identity.iter().filter_map(|(f, v)| Some((f, (*v)?))) {
            if out.len() > 1 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, field)?;
            out.push(b':');
            serde_json::to_writer(&mut out, value)?;
        }
        append_fields(&mut out, &self.meta);
        out.push(b'}');
        Ok(out)
    }

    /// The held JSON of the object at `key`: what [`held_json`] made of it.
    pub(super) fn json(&self, key: (&str, &str)) -> serde_json::Result<Vec<u8>> {
        let meta = self.meta_json(key)?;
        let mut out = Vec::with_capacity(meta.len() + self.rest.len() + 16);
        out.extend_from_slice(b"{\"metadata\":");
        out.extend_from_slice(&meta);
        append_fields(&mut out, &self.rest);
        out.push(b'}');
        Ok(out)
    }

    pub(super) fn metadata(&self, key: (&str, &str)) -> serde_json::Result<ObjectMeta> {
        serde_json::from_slice(&self.meta_json(key)?)
    }
}

/// Appends the fields of the JSON object `object` (as serde_json writes it: `{...}`) to an object
/// being written into `out` that already holds at least its opening brace.
fn append_fields(out: &mut Vec<u8>, object: &[u8]) {
    let fields = object
        .strip_prefix(b"{")
        .and_then(|o| o.strip_suffix(b"}"))
        .unwrap_or_default();
    if fields.is_empty() {
        return;
    }
    if out.last() != Some(&b'{') {
        out.push(b',');
    }
    out.extend_from_slice(fields);
}

/// What an index holds of an object, before its parts are shared (which needs the index's lock).
pub(super) struct Prepared {
    uid: Option<String>,
    resource_version: Option<String>,
    ours: bool,
    split: Split,
}

impl Prepared {
    /// What an index holding `held` of each object holds of `object`.
    pub(super) fn of<K: Cacheable>(object: &K, held: Held) -> serde_json::Result<Prepared> {
        let meta = object.metadata();
        let ours = ownership(meta) != Ownership::Foreign;
        let split = held_json(object, held, ours)?;
        Ok(Prepared {
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            ours,
            split,
        })
    }

    /// The object as held, its parts shared through `parts`; and how many bytes `parts` grew by.
    pub(super) fn share(self, parts: &mut Parts) -> (Stored, i64) {
        let (meta, meta_grown) = parts.share(self.split.meta);
        let (rest, rest_grown) = parts.share(self.split.rest);
        let stored = Stored {
            uid: self.uid,
            resource_version: self.resource_version,
            ours: self.ours,
            meta,
            rest,
        };
        (stored, meta_grown + rest_grown)
    }
}

/// A held object's JSON before it is shared: its metadata less identity, and the rest.
struct Split {
    meta: Vec<u8>,
    rest: Vec<u8>,
}

/// The JSON an index holds of `object` (see [`Held`]). Of the metadata only what the operator
/// reads stays: identity, version, our labels, deletion, and of managedFields only our manager's
/// name (it proves we applied the object). Timestamps, generation and the entry's other fields
/// went into every one of 90,000 objects at 10,000 namespaces for nothing (about 15 MiB).
fn held_json<K: Cacheable>(object: &K, held: Held, ours: bool) -> serde_json::Result<Split> {
    let meta = object.metadata();
    let named_as_ours = match (meta.name.as_deref(), meta.labels.as_ref()) {
        (Some(name), Some(labels)) => labels
            .get(BASELINE_LABEL)
            .is_some_and(|b| name.starts_with(&object_name(b, ""))),
        _ => false,
    };
    let whole = match held {
        Held::AsIs => true,
        Held::Generated => ours && named_as_ours,
        Held::ServiceAccount => false,
    };
    let mut value = serde_json::to_value(object)?;
    let Some(fields) = value.as_object_mut() else {
        return Err(serde::ser::Error::custom("not a JSON object"));
    };
    if held == Held::AsIs {
        // Bounded by whoever built it: held as it is.
    } else if let Some(meta) = fields.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.retain(|k, _| {
            matches!(
                k.as_str(),
                "name"
                    | "namespace"
                    | "uid"
                    | "resourceVersion"
                    | "labels"
                    | "managedFields"
                    | "deletionTimestamp"
            )
        });
        if let Some(labels) = meta.get_mut("labels").and_then(|l| l.as_object_mut()) {
            labels.retain(|k, _| k == MANAGED_BY_LABEL || k == BASELINE_LABEL);
        }
        if let Some(entries) = meta.get_mut("managedFields").and_then(|m| m.as_array_mut()) {
            for entry in entries.iter_mut().filter_map(|e| e.as_object_mut()) {
                entry.retain(|k, _| k == "manager");
            }
        }
    }
    match held {
        Held::ServiceAccount => {
            fields.retain(|k, _| {
                matches!(
                    k.as_str(),
                    "apiVersion" | "kind" | "metadata" | "automountServiceAccountToken"
                )
            });
        }
        // A stub still decodes as its kind: a RoleBinding needs its (small) roleRef.
        _ if !whole => fields
            .retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "roleRef")),
        _ => {}
    }
    let mut meta = match fields.remove("metadata") {
        Some(serde_json::Value::Object(meta)) => meta,
        Some(_) => return Err(serde::ser::Error::custom("metadata is not a JSON object")),
        None => serde_json::Map::new(),
    };
    // Held beside the parts (and the key), so that the parts are the same for many objects.
    for field in IDENTITY {
        meta.remove(field);
    }
    Ok(Split {
        meta: serde_json::to_vec(&meta)?,
        rest: serde_json::to_vec(fields)?,
    })
}

/// The JSON parts held objects share, each held once. A part stays while an object refers to it,
/// so the set is never larger than the objects held, whoever wrote them.
#[derive(Default)]
pub(super) struct Parts(HashSet<Arc<[u8]>>);

impl Parts {
    /// The shared copy of `bytes`, and how many bytes the set grew by.
    pub(super) fn share(&mut self, bytes: Vec<u8>) -> (Arc<[u8]>, i64) {
        if let Some(held) = self.0.get(bytes.as_slice()) {
            return (held.clone(), 0);
        }
        let part: Arc<[u8]> = bytes.into();
        self.0.insert(part.clone());
        (part.clone(), part.len() as i64)
    }

    /// Lets go of an object's parts; a part no other object refers to leaves the set. Returns the
    /// bytes freed.
    pub(super) fn release(&mut self, stored: Stored) -> i64 {
        let parts = [Arc::downgrade(&stored.meta), Arc::downgrade(&stored.rest)];
        drop(stored);
        let mut freed = 0;
        for part in parts.iter().filter_map(Weak::upgrade) {
            // Held by the set and by `part` only.
            if Arc::strong_count(&part) == 2 && self.0.remove(&part) {
                freed += part.len() as i64;
            }
        }
        freed
    }

    /// Drops every part no object refers to (after a relist replaced the contents wholesale).
    /// Returns the bytes held.
    pub(super) fn sweep(&mut self) -> i64 {
        self.0.retain(|part| Arc::strong_count(part) > 1);
        self.0.iter().map(|part| part.len() as i64).sum()
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Drops what a cache does not need: every managedFields entry but our own (kept, without its
/// field set unless `keep_fields`, because it proves we applied the object), and the
/// last-applied annotation kubectl writes.
pub fn strip_metadata(meta: &mut ObjectMeta, keep_fields: bool) {
    if let Some(entries) = meta.managed_fields.as_mut() {
        entries.retain(|e| e.manager.as_deref() == Some(FIELD_MANAGER));
        if !keep_fields {
            for entry in entries.iter_mut() {
                entry.fields_v1 = None;
            }
        }
    }
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Through an index, as the operator holds and reads them.
#[cfg(test)]
mod tests {
    use k8s_openapi::api::networking::v1::NetworkPolicy;

    use super::*;
    use crate::controller::index::tests::policy;
    use crate::controller::index::{IndexMetrics, NamespacedIndex};

    /// A NetworkPolicy carrying our labels, with a large annotation and many peers.
    fn labelled(name: &str, baseline: &str, by_us: bool) -> NetworkPolicy {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let peers: Vec<serde_json::Value> = (0..200)
            .map(|i| serde_json::json!({"ipBlock": {"cidr": format!("10.{}.{}.0/24", i / 256, i % 256)}}))
            .collect();
        let mut p: NetworkPolicy = serde_json::from_value(serde_json::json!({
            "metadata": {
                "namespace": "t", "name": name, "uid": "u", "resourceVersion": "1",
                "creationTimestamp": "2026-12-03T00:00:00Z", "generation": 3,
                "labels": {MANAGED_BY_LABEL: "zerotrust-operator", BASELINE_LABEL: baseline, "extra": "x"},
                "annotations": {"big": "x".repeat(250 * 1024)},
            },
            "spec": {"podSelector": {}, "ingress": [{"from": peers}]},
        }))
        .unwrap();
        if by_us {
            p.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
                manager: Some(FIELD_MANAGER.to_string()),
                operation: Some("Apply".to_string()),
                api_version: Some("networking.k8s.io/v1".to_string()),
                fields_type: Some("FieldsV1".to_string()),
                ..ManagedFieldsEntry::default()
            }]);
        }
        p
    }

    fn held_bytes(index: &NamespacedIndex) -> i64 {
        index.held_bytes()
    }

    #[test]
    fn what_a_tenant_labels_like_ours_is_held_as_a_small_stub() {
        let index = NamespacedIndex::new("NetworkPolicy", Held::Generated, IndexMetrics::default());
        // Not applied by us, or named unlike anything a baseline renders: a stub each.
        index.write_through(&labelled("zt-b-default-deny", "b", false));
        assert!(held_bytes(&index) < 1024, "{}", held_bytes(&index));
        index.write_through(&labelled("junk", "b", true));
        assert!(held_bytes(&index) < 2048, "{}", held_bytes(&index));
        let stubs: Vec<NetworkPolicy> = index.in_namespace("t", |j| serde_json::from_slice(j));
        assert_eq!(stubs.len(), 2, "still there, for conflicts and relabelling");
        assert!(stubs.iter().all(|p| p.spec.is_none()));
        // Ours: whole, but without annotations or others' labels.
        index.forget("t", "zt-b-default-deny");
        index.forget("t", "junk");
        assert_eq!(held_bytes(&index), 0);
        let ours = labelled("zt-b-allow-x", "b", true);
        index.write_through(&ours);
        let held: Vec<NetworkPolicy> = index.in_namespace("t", |j| serde_json::from_slice(j));
        assert!(held[0].spec == ours.spec, "the spec whole");
        assert!(held[0].metadata.annotations.is_none());
        assert_eq!(held[0].metadata.labels.as_ref().unwrap().len(), 2);
        assert_eq!(ownership(&held[0].metadata), ownership(&ours.metadata));
        // Of the metadata, only what the operator reads.
        let meta = &held[0].metadata;
        assert_eq!(
            (meta.uid.as_deref(), meta.resource_version.as_deref()),
            (Some("u"), Some("1"))
        );
        assert!(meta.creation_timestamp.is_none() && meta.generation.is_none());
        let entries = meta.managed_fields.as_deref().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].manager.as_deref(), Some(FIELD_MANAGER));
        assert!(entries[0].operation.is_none() && entries[0].api_version.is_none());
        // The same for an object exactly as our apply returns it (no annotations, our labels).
        let mut plain = labelled("zt-b-allow-y", "b", true);
        plain.metadata.annotations = None;
        plain.metadata.labels.as_mut().unwrap().remove("extra");
        index.write_through(&plain);
        let held: Vec<NetworkPolicy> = index.in_namespace("t", |j| serde_json::from_slice(j));
        let meta = &held[1].metadata;
        assert_eq!(meta.name.as_deref(), Some("zt-b-allow-y"));
        assert!(meta.creation_timestamp.is_none() && meta.generation.is_none());
        assert!(
            meta.managed_fields.as_deref().unwrap()[0]
                .operation
                .is_none()
        );
    }

    #[test]
    fn objects_that_differ_only_in_identity_share_their_json() {
        let index = NamespacedIndex::new("NetworkPolicy", Held::Generated, IndexMetrics::default());
        let mut ours = labelled("zt-b-allow-x", "b", true);
        ours.metadata.annotations = None;
        index.write_through(&ours);
        let one = held_bytes(&index);
        // The same policy in 100 more namespaces holds no more JSON.
        for i in 0..100 {
            let mut copy = ours.clone();
            copy.metadata.namespace = Some(format!("n-{i}"));
            copy.metadata.uid = Some(format!("u-{i}"));
            index.write_through(&copy);
        }
        assert_eq!(held_bytes(&index), one);
        // Each reads back as itself, identity and all.
        let held: Vec<NetworkPolicy> = index.in_namespace("n-7", |j| serde_json::from_slice(j));
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].metadata.uid.as_deref(), Some("u-7"));
        assert_eq!(held[0].metadata.namespace.as_deref(), Some("n-7"));
        assert_eq!(held[0].metadata.name.as_deref(), Some("zt-b-allow-x"));
        assert!(held[0].spec == ours.spec);
        assert_eq!(index.count(|m| ownership(m) != Ownership::Foreign), 101);
        // A part stays while any object refers to it, and leaves with the last one.
        index.forget("t", "zt-b-allow-x");
        assert_eq!(held_bytes(&index), one);
        for i in 0..100 {
            index.forget(&format!("n-{i}"), "zt-b-allow-x");
        }
        assert_eq!(held_bytes(&index), 0);
        assert!(index.holds_no_parts());
        // A relist that no longer lists an object lets go of its parts too.
        index.write_through(&ours);
        index.load(Vec::<NetworkPolicy>::new());
        assert_eq!(held_bytes(&index), 0);
        assert!(index.holds_no_parts());
    }

    #[test]
    fn identity_that_needs_escaping_reads_back_the_same() {
        let index = NamespacedIndex::new("NetworkPolicy", Held::AsIs, IndexMetrics::default());
        let odd = policy("t", "a\"b\\c", "u\u{1}", 7);
        index.write_through(&odd);
        let held: Vec<NetworkPolicy> = index.in_namespace("t", |j| serde_json::from_slice(j));
        assert_eq!(held[0].metadata, odd.metadata);
        // Nothing but identity: the metadata part is an empty object and still reads back.
        let bare = policy("", "x", "u", 1);
        index.write_through(&bare);
        let held: Vec<NetworkPolicy> = index.in_namespace("", |j| serde_json::from_slice(j));
        assert_eq!(held[0].metadata.namespace, None);
        assert_eq!(held[0].metadata.name.as_deref(), Some("x"));
    }

    #[test]
    fn a_service_account_is_held_as_its_token_setting_only() {
        use k8s_openapi::api::core::v1::ServiceAccount;
        let index = NamespacedIndex::new(
            "ServiceAccount",
            Held::ServiceAccount,
            IndexMetrics::default(),
        );
        let sa: ServiceAccount = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "t", "name": "default", "uid": "u",
                         "annotations": {"big": "x".repeat(100 * 1024)}},
            "automountServiceAccountToken": false,
            "imagePullSecrets": [{"name": "x".repeat(200)}],
        }))
        .unwrap();
        index.write_through(&sa);
        assert!(held_bytes(&index) < 512);
        let held: Vec<ServiceAccount> = index.in_namespace("t", |j| serde_json::from_slice(j));
        assert_eq!(held[0].automount_service_account_token, Some(false));
        assert!(held[0].image_pull_secrets.is_none());
    }

    #[test]
    fn strips_what_the_cache_does_not_need() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
        let entry = |manager: &str| ManagedFieldsEntry {
            manager: Some(manager.to_string()),
            fields_v1: Some(FieldsV1(serde_json::json!({"f:metadata": {}}))),
            ..ManagedFieldsEntry::default()
        };
        let mut meta = ObjectMeta {
            managed_fields: Some(vec![entry("kubectl"), entry(FIELD_MANAGER)]),
            annotations: Some(
                [(
                    "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                    "{}".to_string(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        };
        strip_metadata(&mut meta, false);
        let entries = meta.managed_fields.as_deref().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].manager.as_deref(), Some(FIELD_MANAGER));
        assert!(entries[0].fields_v1.is_none());
        assert!(meta.annotations.unwrap().is_empty());
    }
}
