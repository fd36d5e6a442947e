//! In-memory caches fed by one shared watch per kind: generated objects indexed by namespace (so a
//! reconcile reads one namespace, not the cluster). Memory stays bounded at 10,000 namespaces:
//! `managedFields` are stripped, and each object is held as its compact JSON (a fraction of its
//! deserialized size), decoded only when a reconcile of its namespace reads it.

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::engine::FIELD_MANAGER;

/// Objects of one kind, by namespace then name.
pub struct NamespacedIndex<K> {
    inner: RwLock<IndexState>,
    kind: PhantomData<fn() -> K>,
}

type ByNamespace = HashMap<String, BTreeMap<String, Stored>>;

struct IndexState {
    objects: ByNamespace,
    /// Objects of a relist in progress; they replace `objects` when it completes.
    relist: Option<ByNamespace>,
    ready: bool,
}

/// One cached object: its JSON, and what the index needs to order versions.
struct Stored {
    uid: Option<String>,
    resource_version: Option<String>,
    json: Box<[u8]>,
}

impl Stored {
    fn new<K: Resource + Serialize>(object: &K) -> Stored {
        let meta = object.meta();
        Stored {
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            json: serde_json::to_vec(object)
                .unwrap_or_default()
                .into_boxed_slice(),
        }
    }

    fn decode<K: DeserializeOwned>(&self) -> Option<K> {
        serde_json::from_slice(&self.json).ok()
    }
}

impl<K: Resource + Clone + Serialize + DeserializeOwned> NamespacedIndex<K> {
    pub fn new() -> Arc<Self> {
        Arc::new(NamespacedIndex {
            inner: RwLock::new(IndexState {
                objects: HashMap::new(),
                relist: None,
                ready: false,
            }),
            kind: PhantomData,
        })
    }

    /// The objects in `namespace`.
    pub fn in_namespace(&self, namespace: &str) -> Vec<K> {
        let state = self.inner.read().expect("index lock");
        state
            .objects
            .get(namespace)
            .map(|m| m.values().filter_map(Stored::decode).collect())
            .unwrap_or_default()
    }

    /// True once the first full list has been received.
    pub fn is_ready(&self) -> bool {
        self.inner.read().expect("index lock").ready
    }

    /// Every namespace holding at least one object.
    pub fn namespaces(&self) -> Vec<String> {
        let state = self.inner.read().expect("index lock");
        state.objects.keys().cloned().collect()
    }

    /// How many objects satisfy `test`.
    pub fn count(&self, test: impl Fn(&K) -> bool) -> usize {
        let state = self.inner.read().expect("index lock");
        state
            .objects
            .values()
            .flat_map(BTreeMap::values)
            .filter_map(Stored::decode::<K>)
            .filter(|o| test(o))
            .count()
    }

    pub fn len(&self) -> usize {
        let state = self.inner.read().expect("index lock");
        state.objects.values().map(BTreeMap::len).sum()
    }

    fn apply(&self, event: &watcher::Event<K>) {
        let mut state = self.inner.write().expect("index lock");
        let insert = |map: &mut ByNamespace, obj: &K| {
            map.entry(obj.namespace().unwrap_or_default())
                .or_default()
                .insert(obj.name_any(), Stored::new(obj));
        };
        match event {
            watcher::Event::Apply(obj) => {
                // Our own writes are put in before their watch events arrive; an event older than
                // what we hold must not roll the cache back.
                let held = state
                    .objects
                    .get(&obj.namespace().unwrap_or_default())
                    .and_then(|m| m.get(&obj.name_any()));
                let incoming = (&obj.meta().uid, &obj.meta().resource_version);
                if held.is_none_or(|held| !newer((&held.uid, &held.resource_version), incoming)) {
                    insert(&mut state.objects, obj);
                }
            }
            watcher::Event::Delete(obj) => {
                let ns = obj.namespace().unwrap_or_default();
                if let Some(names) = state.objects.get_mut(&ns) {
                    names.remove(&obj.name_any());
                    if names.is_empty() {
                        state.objects.remove(&ns);
                    }
                }
            }
            watcher::Event::Init => state.relist = Some(HashMap::new()),
            watcher::Event::InitApply(obj) => {
                if let Some(relist) = state.relist.as_mut() {
                    insert(relist, obj);
                }
            }
            watcher::Event::InitDone => {
                if let Some(relist) = state.relist.take() {
                    state.objects = relist;
                }
                state.ready = true;
            }
        }
    }

    /// Puts in an object we just wrote, so the next reconcile sees it before its watch event.
    pub fn write_through(&self, object: K) {
        self.apply(&watcher::Event::Apply(object));
    }

    /// Forgets an object we just deleted.
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut state = self.inner.write().expect("index lock");
        if let Some(names) = state.objects.get_mut(namespace) {
            names.remove(name);
        }
    }

    /// Replaces the contents with `objects`, as a completed list does.
    pub fn load(&self, objects: impl IntoIterator<Item = K>) {
        self.apply(&watcher::Event::Init);
        for object in objects {
            self.apply(&watcher::Event::InitApply(object));
        }
        self.apply(&watcher::Event::InitDone);
    }

    /// Keeps the index current from `events`, passing every event on.
    pub fn feed<S>(self: &Arc<Self>, events: S) -> impl Stream<Item = S::Item> + use<S, K>
    where
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
    newer((&a.uid, &a.resource_version), (&b.uid, &b.resource_version))
}

/// [`is_newer`] on (uid, resourceVersion) pairs.
fn newer(
    (a_uid, a_version): (&Option<String>, &Option<String>),
    (b_uid, b_version): (&Option<String>, &Option<String>),
) -> bool {
    let version = |v: &Option<String>| v.as_deref().and_then(|v| v.parse::<u64>().ok());
    a_uid == b_uid
        && matches!((version(a_version), version(b_version)), (Some(a), Some(b)) if a > b)
}
