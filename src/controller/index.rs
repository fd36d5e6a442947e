//! An in-memory cache of one kind, fed by its watch and indexed by namespace (so a reconcile reads
//! one namespace, not the cluster). Each object is held as its compact JSON, a fraction of its
//! deserialized size, and decoded only when a reconcile of its namespace reads it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::watcher;
use parking_lot::RwLock;
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use tracing::warn;

use crate::engine::{FIELD_MANAGER, Ownership, ownership};

/// Objects of one kind, by namespace then name.
pub struct NamespacedIndex {
    kind: &'static str,
    inner: RwLock<IndexState>,
    /// Objects that could not be held or read back: logged, and counted here.
    dropped: Counter,
}

type ByNamespace = HashMap<String, BTreeMap<String, Stored>>;

#[derive(Default)]
struct IndexState {
    objects: ByNamespace,
    /// Objects of a relist in progress; they replace `objects` when it completes.
    relist: Option<ByNamespace>,
    ready: bool,
    /// Uids of our objects that left the watch (deleted, or their labels taken off), by
    /// (namespace, name): a same-named object found later with that uid is ours, relabelled.
    departed: HashMap<(String, String), String>,
}

/// Most departed objects remembered; past that the memory starts afresh (an object forgotten so
/// is reported as a Conflict, never taken over).
const MAX_DEPARTED: usize = 10_000;

/// One cached object: its JSON, and what the index needs to order versions.
#[derive(Clone)]
struct Stored {
    uid: Option<String>,
    resource_version: Option<String>,
    /// Seen as ours (our labels and field manager) at some version of this uid: it stays ours
    /// when someone takes the field manager off.
    ours: bool,
    json: Box<[u8]>,
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

/// Just the metadata of a stored object, read without decoding the rest.
#[derive(serde::Deserialize)]
struct MetadataOnly {
    #[serde(default)]
    metadata: ObjectMeta,
}

impl NamespacedIndex {
    /// An empty index of `kind` (for log lines), counting what it drops in `dropped`.
    pub fn new(kind: &'static str, dropped: Counter) -> Arc<Self> {
        Arc::new(NamespacedIndex {
            kind,
            inner: RwLock::new(IndexState::default()),
            dropped,
        })
    }

    /// The objects in `namespace`, read by `decode`.
    pub fn in_namespace<T>(
        &self,
        namespace: &str,
        decode: impl Fn(&[u8]) -> serde_json::Result<T>,
    ) -> Vec<T> {
        let state = self.inner.read();
        let Some(names) = state.objects.get(namespace) else {
            return Vec::new();
        };
        names
            .iter()
            .filter_map(|(name, stored)| match decode(&stored.json) {
                Ok(object) => Some(object),
                Err(error) => {
                    self.drop_noted(namespace, name, &error);
                    None
                }
            })
            .collect()
    }

    /// True once the first full list has been received.
    pub fn is_ready(&self) -> bool {
        self.inner.read().ready
    }

    /// How many objects have metadata satisfying `test`.
    pub fn count(&self, test: impl Fn(&ObjectMeta) -> bool) -> usize {
        let state = self.inner.read();
        state
            .objects
            .values()
            .flat_map(BTreeMap::values)
            .filter_map(|s| serde_json::from_slice::<MetadataOnly>(&s.json).ok())
            .filter(|o| test(&o.metadata))
            .count()
    }

    fn drop_noted(&self, namespace: &str, name: &str, error: &serde_json::Error) {
        warn!(kind = self.kind, namespace, name, %error, "cache: object dropped");
        self.dropped.inc();
    }

    fn stored<K: Cacheable>(&self, object: &K) -> Option<Stored> {
        let meta = object.metadata();
        match serde_json::to_vec(object) {
            Ok(json) => Some(Stored {
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
                ours: ownership(meta) != Ownership::Foreign,
                json: json.into_boxed_slice(),
            }),
            Err(error) => {
                let namespace = meta.namespace.as_deref().unwrap_or_default();
                let name = meta.name.as_deref().unwrap_or_default();
                self.drop_noted(namespace, name, &error);
                None
            }
        }
    }

    /// Applies one watch event. Our own writes are put in before their watch events arrive, so an
    /// event older than what we hold never rolls the cache back; during a relist they go into the
    /// relist too, so its completion does not forget them.
    pub fn apply<K: Cacheable>(&self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Apply(object) => self.write_through(object),
            watcher::Event::Delete(object) => {
                let (namespace, name) = key(object.metadata());
                let mut state = self.inner.write();
                let held = state.objects.get(&namespace).and_then(|n| n.get(&name));
                if let Some(uid) = held.filter(|h| h.ours).and_then(|h| h.uid.clone()) {
                    if state.departed.len() >= MAX_DEPARTED {
                        state.departed.clear();
                    }
                    state
                        .departed
                        .insert((namespace.clone(), name.clone()), uid);
                }
                drop(state);
                self.forget(&namespace, &name);
            }
            watcher::Event::Init => self.inner.write().relist = Some(HashMap::new()),
            watcher::Event::InitApply(object) => {
                let Some(stored) = self.stored(object) else {
                    return;
                };
                let (namespace, name) = key(object.metadata());
                if let Some(relist) = self.inner.write().relist.as_mut() {
                    upsert(relist, &namespace, &name, stored);
                }
            }
            watcher::Event::InitDone => {
                let mut state = self.inner.write();
                if let Some(relist) = state.relist.take() {
                    state.objects = relist;
                }
                state.ready = true;
            }
        }
    }

    /// Puts in an object we just wrote, so the next reconcile sees it before its watch event.
    pub fn write_through<K: Cacheable>(&self, object: &K) {
        let Some(stored) = self.stored(object) else {
            return;
        };
        let (namespace, name) = key(object.metadata());
        let mut state = self.inner.write();
        let state = &mut *state;
        state.departed.remove(&(namespace.clone(), name.clone()));
        if let Some(relist) = state.relist.as_mut() {
            upsert(relist, &namespace, &name, stored.clone());
        }
        upsert(&mut state.objects, &namespace, &name, stored);
    }

    /// The uid an object of ours had when it left the watch, if it left and has not come back.
    pub fn departed_uid(&self, namespace: &str, name: &str) -> Option<String> {
        let key = (namespace.to_string(), name.to_string());
        self.inner.read().departed.get(&key).cloned()
    }

    /// Names of objects in `namespace` that were ours at some version and no longer carry both
    /// our labels and our field manager.
    pub fn relabelled(&self, namespace: &str) -> Vec<String> {
        let state = self.inner.read();
        let Some(names) = state.objects.get(namespace) else {
            return Vec::new();
        };
        names
            .iter()
            .filter(|(_, s)| s.ours)
            .filter(|(_, s)| {
                serde_json::from_slice::<MetadataOnly>(&s.json)
                    .is_ok_and(|o| ownership(&o.metadata) == Ownership::Foreign)
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Forgets an object we just deleted.
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut state = self.inner.write();
        if let Some(relist) = state.relist.as_mut() {
            remove(relist, namespace, name);
        }
        remove(&mut state.objects, namespace, name);
    }

    /// Replaces the contents with `objects`, as a completed list does.
    pub fn load<K: Cacheable>(&self, objects: impl IntoIterator<Item = K>) {
        self.apply(&watcher::Event::<K>::Init);
        for object in objects {
            self.apply(&watcher::Event::InitApply(object));
        }
        self.apply(&watcher::Event::<K>::InitDone);
    }

    /// Keeps the index current from `events`, passing every event on.
    pub fn feed<K, S>(self: &Arc<Self>, events: S) -> impl Stream<Item = S::Item> + use<K, S>
    where
        K: Cacheable,
        S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    {
        let index = self.clone();
        events.inspect(move |event| {
            if let Ok(event) = event {
                index.apply(event);
            }
        })
    }
}

fn key(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Holds `stored` unless the index already holds a later version of the same object. Once an
/// object was seen as ours, every later version of it (same uid) is remembered as ours.
fn upsert(objects: &mut ByNamespace, namespace: &str, name: &str, mut stored: Stored) {
    let names = objects.entry(namespace.to_string()).or_default();
    match names.get(name) {
        Some(held) if newer(held, &stored) => {}
        held => {
            stored.ours |= held.is_some_and(|h| h.ours && h.uid == stored.uid);
            names.insert(name.to_string(), stored);
        }
    }
}

fn remove(objects: &mut ByNamespace, namespace: &str, name: &str) {
    if let Some(names) = objects.get_mut(namespace) {
        names.remove(name);
        if names.is_empty() {
            objects.remove(namespace);
        }
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

/// True when `a` is a later version of the same object than `b`. Resource versions are opaque, but
/// the API server's are etcd revisions; anything else compares as "not newer".
pub fn is_newer(a: &ObjectMeta, b: &ObjectMeta) -> bool {
    same_uid_later((&a.uid, &a.resource_version), (&b.uid, &b.resource_version))
}

fn newer(a: &Stored, b: &Stored) -> bool {
    same_uid_later((&a.uid, &a.resource_version), (&b.uid, &b.resource_version))
}

fn same_uid_later(
    (a_uid, a_version): (&Option<String>, &Option<String>),
    (b_uid, b_version): (&Option<String>, &Option<String>),
) -> bool {
    let version = |v: &Option<String>| v.as_deref().and_then(|v| v.parse::<u64>().ok());
    a_uid == b_uid
        && matches!((version(a_version), version(b_version)), (Some(a), Some(b)) if a > b)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::networking::v1::NetworkPolicy;

    use super::*;

    fn policy(namespace: &str, name: &str, uid: &str, version: u64) -> NetworkPolicy {
        NetworkPolicy {
            metadata: ObjectMeta {
                namespace: Some(namespace.to_string()),
                name: Some(name.to_string()),
                uid: Some(uid.to_string()),
                resource_version: Some(version.to_string()),
                ..ObjectMeta::default()
            },
            spec: None,
        }
    }

    fn versions(index: &NamespacedIndex, namespace: &str) -> Vec<(String, String)> {
        index.in_namespace(namespace, |json| {
            let p: NetworkPolicy = serde_json::from_slice(json)?;
            Ok((
                p.metadata.name.unwrap_or_default(),
                p.metadata.resource_version.unwrap_or_default(),
            ))
        })
    }

    fn pair(name: &str, version: &str) -> (String, String) {
        (name.to_string(), version.to_string())
    }

    #[test]
    fn an_older_event_never_rolls_back_a_write_through() {
        let index = NamespacedIndex::new("NetworkPolicy", Counter::default());
        index.write_through(&policy("a", "p", "u1", 10));
        index.apply(&watcher::Event::Apply(policy("a", "p", "u1", 9)));
        assert_eq!(versions(&index, "a"), [pair("p", "10")]);
        index.apply(&watcher::Event::Apply(policy("a", "p", "u1", 11)));
        assert_eq!(versions(&index, "a"), [pair("p", "11")]);
        // A recreated object (new uid) replaces the old one whatever its version.
        index.apply(&watcher::Event::Apply(policy("a", "p", "u2", 5)));
        assert_eq!(versions(&index, "a"), [pair("p", "5")]);
        index.forget("a", "p");
        assert!(versions(&index, "a").is_empty());
    }

    #[test]
    fn a_relist_replaces_the_contents_but_keeps_newer_writes() {
        let index = NamespacedIndex::new("NetworkPolicy", Counter::default());
        assert!(!index.is_ready());
        index.load([policy("a", "gone", "u0", 1), policy("a", "p", "u1", 10)]);
        assert!(index.is_ready());
        assert_eq!(versions(&index, "a"), [pair("gone", "1"), pair("p", "10")]);

        index.apply(&watcher::Event::<NetworkPolicy>::Init);
        index.apply(&watcher::Event::InitApply(policy("a", "p", "u1", 11)));
        // Written by us after the list was taken: must survive the relist, and a listed version
        // older than it must not roll it back.
        index.write_through(&policy("a", "p", "u1", 13));
        index.write_through(&policy("a", "new", "u4", 14));
        index.apply(&watcher::Event::InitApply(policy("a", "p", "u1", 12)));
        index.apply(&watcher::Event::InitApply(policy("b", "q", "u3", 12)));
        // Until the relist completes, readers see the old contents.
        assert_eq!(
            versions(&index, "a"),
            [pair("gone", "1"), pair("new", "14"), pair("p", "13")]
        );
        index.apply(&watcher::Event::<NetworkPolicy>::InitDone);
        assert_eq!(versions(&index, "a"), [pair("new", "14"), pair("p", "13")]);
        assert_eq!(versions(&index, "b"), [pair("q", "12")]);
    }

    #[test]
    fn an_object_that_does_not_decode_is_counted_not_silently_dropped() {
        let dropped = Counter::<u64>::default();
        let index = NamespacedIndex::new("NetworkPolicy", dropped.clone());
        index.write_through(&policy("a", "p", "u1", 1));
        let read: Vec<()> =
            index.in_namespace("a", |json| serde_json::from_slice::<u32>(json).map(|_| ()));
        assert!(read.is_empty());
        assert_eq!(dropped.get(), 1);
    }

    #[test]
    fn counts_by_metadata() {
        let index = NamespacedIndex::new("NetworkPolicy", Counter::default());
        index.load([policy("a", "p", "u1", 1), policy("b", "q", "u2", 2)]);
        assert_eq!(index.count(|m| m.namespace.as_deref() == Some("b")), 1);
        assert_eq!(index.count(|_| true), 2);
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
