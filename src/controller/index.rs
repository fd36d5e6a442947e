//! An in-memory cache of one kind, fed by its watch and indexed by namespace (so a reconcile reads
//! one namespace, not the cluster). Each object is held as its compact JSON, a fraction of its
//! deserialized size, and decoded only when a reconcile of its namespace reads it. The JSON is
//! held in two parts shared between objects (see `held_object`): the objects one baseline renders
//! into 10,000 namespaces differ in little more than their identity.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use parking_lot::RwLock;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tracing::warn;

use super::held_object::{Cacheable, Held, Parts, Prepared, Stored};
use crate::engine::{Ownership, ownership};

/// Objects of one kind, by namespace then name.
pub struct NamespacedIndex {
    kind: &'static str,
    held: Held,
    inner: RwLock<IndexState>,
    metrics: IndexMetrics,
}

/// What an index reports: objects it could not hold or read back (each also logged), and the
/// bytes it holds.
#[derive(Clone, Default)]
pub struct IndexMetrics {
    pub dropped: Counter,
    pub bytes: Gauge,
}

/// Objects by (namespace, name), one ordered map per kind: a namespace's objects are one range of
/// it. (A map per namespace costs a B-tree node of about 1 KiB for each namespace's one or two
/// objects of the kind: at 10,000 namespaces, 56 MiB across the kinds, measured; BENCHMARKS.md.)
type ByNamespace = BTreeMap<(String, String), Stored>;

/// The objects of `namespace` in `objects`, by name.
fn in_range<'a>(
    objects: &'a ByNamespace,
    namespace: &'a str,
) -> impl Iterator<Item = (&'a str, &'a Stored)> + 'a {
    objects
        .range((namespace.to_string(), String::new())..)
        .take_while(move |((n, _), _)| n == namespace)
        .map(|((_, name), stored)| (name.as_str(), stored))
}

#[derive(Default)]
struct IndexState {
    objects: ByNamespace,
    /// Objects of a relist in progress; they replace `objects` when it completes.
    relist: Option<ByNamespace>,
    /// Every JSON part a held object refers to, once: what `objects` and `relist` share.
    parts: Parts,
    ready: bool,
    /// Uids of our objects that left the watch (deleted, or their labels taken off), by
    /// (namespace, name): a same-named object found later with that uid is ours, relabelled.
    departed: HashMap<(String, String), String>,
}

/// Most departed objects remembered; past that the memory starts afresh (an object forgotten so
/// is reported as a Conflict, never taken over).
const MAX_DEPARTED: usize = 10_000;

impl NamespacedIndex {
    /// An empty index of `kind` (for log lines) holding `held` of each object, reporting to
    /// `metrics`.
    pub fn new(kind: &'static str, held: Held, metrics: IndexMetrics) -> Arc<Self> {
        Arc::new(NamespacedIndex {
            kind,
            held,
            inner: RwLock::new(IndexState::default()),
            metrics,
        })
    }

    /// The objects in `namespace`, read by `decode`.
    pub fn in_namespace<T>(
        &self,
        namespace: &str,
        decode: impl Fn(&[u8]) -> serde_json::Result<T>,
    ) -> Vec<T> {
        let state = self.inner.read();
        in_range(&state.objects, namespace)
            .filter_map(|(name, stored)| {
                match stored
                    .json((namespace, name))
                    .and_then(|json| decode(&json))
                {
                    Ok(object) => Some(object),
                    Err(error) => {
                        self.drop_noted(namespace, name, &error);
                        None
                    }
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
            .iter()
            .filter_map(|((namespace, name), s)| s.metadata((namespace, name)).ok())
            .filter(|meta| test(meta))
            .count()
    }

    fn drop_noted(&self, namespace: &str, name: &str, error: &serde_json::Error) {
        warn!(kind = self.kind, namespace, name, %error, "cache: object dropped");
        self.metrics.dropped.inc();
    }

    /// What the index holds of `object`, not yet shared (that needs the lock).
    fn prepared<K: Cacheable>(&self, object: &K) -> Option<Prepared> {
        match Prepared::of(object, self.held) {
            Ok(prepared) => Some(prepared),
            Err(error) => {
                let meta = object.metadata();
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
                let key = key(object.metadata());
                let mut state = self.inner.write();
                let held = state.objects.get(&key);
                if let Some(uid) = held.filter(|h| h.ours).and_then(|h| h.uid.clone()) {
                    if state.departed.len() >= MAX_DEPARTED {
                        state.departed.clear();
                    }
                    state.departed.insert(key.clone(), uid);
                }
                self.remove_held(&mut state, &key);
            }
            watcher::Event::Init => self.inner.write().relist = Some(BTreeMap::new()),
            watcher::Event::InitApply(object) => {
                let Some(prepared) = self.prepared(object) else {
                    return;
                };
                let mut state = self.inner.write();
                let state = &mut *state;
                if let Some(relist) = state.relist.as_mut() {
                    let (stored, grown) = prepared.share(&mut state.parts);
                    let left = upsert(relist, key(object.metadata()), stored);
                    let freed = left.map_or(0, |l| state.parts.release(l));
                    self.metrics.bytes.inc_by(grown - freed);
                }
            }
            watcher::Event::InitDone => {
                let mut state = self.inner.write();
                if let Some(relist) = state.relist.take() {
                    state.objects = relist;
                    let held = state.parts.sweep();
                    self.metrics.bytes.set(held);
                }
                state.ready = true;
            }
        }
    }

    /// Puts in an object we just wrote, so the next reconcile sees it before its watch event.
    pub fn write_through<K: Cacheable>(&self, object: &K) {
        let Some(prepared) = self.prepared(object) else {
            return;
        };
        let key = key(object.metadata());
        let mut state = self.inner.write();
        let state = &mut *state;
        state.departed.remove(&key);
        let (stored, grown) = prepared.share(&mut state.parts);
        let mut freed = 0;
        if let Some(relist) = state.relist.as_mut()
            && let Some(left) = upsert(relist, key.clone(), stored.clone())
        {
            freed += state.parts.release(left);
        }
        if let Some(left) = upsert(&mut state.objects, key, stored) {
            freed += state.parts.release(left);
        }
        self.metrics.bytes.inc_by(grown - freed);
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
        in_range(&state.objects, namespace)
            .filter(|(_, s)| s.ours)
            .filter(|(name, s)| {
                s.metadata((namespace, name))
                    .is_ok_and(|meta| ownership(&meta) == Ownership::Foreign)
            })
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// Forgets an object we just deleted.
    pub fn forget(&self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        self.remove_held(&mut self.inner.write(), &key);
    }

    /// Removes `key` from the contents and from a relist in progress.
    fn remove_held(&self, state: &mut IndexState, key: &(String, String)) {
        let mut freed = 0;
        if let Some(left) = state.relist.as_mut().and_then(|r| r.remove(key)) {
            freed += state.parts.release(left);
        }
        if let Some(left) = state.objects.remove(key) {
            freed += state.parts.release(left);
        }
        self.metrics.bytes.dec_by(freed);
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
/// object was seen as ours, every later version of it (same uid) is remembered as ours. Returns
/// what is no longer held (the version replaced, or `stored` itself), for its parts' release.
#[must_use]
fn upsert(objects: &mut ByNamespace, key: (String, String), mut stored: Stored) -> Option<Stored> {
    match objects.get(&key) {
        Some(held) if newer(held, &stored) => Some(stored),
        held => {
            stored.ours |= held.is_some_and(|h| h.ours && h.uid == stored.uid);
            objects.insert(key, stored)
        }
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

/// What the stored-form tests in `held_object` read of an index.
#[cfg(test)]
impl NamespacedIndex {
    /// The bytes of JSON held, as reported.
    pub(super) fn held_bytes(&self) -> i64 {
        self.metrics.bytes.get()
    }

    /// True when no JSON part is held.
    pub(super) fn holds_no_parts(&self) -> bool {
        self.inner.read().parts.is_empty()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use k8s_openapi::api::networking::v1::NetworkPolicy;

    use super::*;

    pub(crate) fn policy(namespace: &str, name: &str, uid: &str, version: u64) -> NetworkPolicy {
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
        let index = NamespacedIndex::new("NetworkPolicy", Held::AsIs, IndexMetrics::default());
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
        let index = NamespacedIndex::new("NetworkPolicy", Held::AsIs, IndexMetrics::default());
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
    fn a_namespace_reads_its_own_objects_only_whatever_its_name_sorts_next_to() {
        let index = NamespacedIndex::new("NetworkPolicy", Held::AsIs, IndexMetrics::default());
        // Cluster-scoped objects are held under "", which sorts first; "a" is a prefix of the
        // names that sort right after it.
        for (namespace, name) in [
            ("", "c"),
            ("a", "p"),
            ("a", "q"),
            ("a\0", "p"),
            ("a-b", "p"),
        ] {
            index.write_through(&policy(namespace, name, &format!("{namespace}/{name}"), 1));
        }
        let names = |namespace: &str| -> Vec<String> {
            versions(&index, namespace)
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        assert_eq!(names(""), ["c"]);
        assert_eq!(names("a"), ["p", "q"]);
        assert_eq!(names("a\0"), ["p"]);
        assert_eq!(names("a-b"), ["p"]);
        assert!(names("b").is_empty() && names("a-").is_empty());
        index.forget("a", "p");
        assert_eq!(names("a"), ["q"]);
    }

    #[test]
    fn an_object_that_does_not_decode_is_counted_not_silently_dropped() {
        let metrics = IndexMetrics::default();
        let index = NamespacedIndex::new("NetworkPolicy", Held::AsIs, metrics.clone());
        index.write_through(&policy("a", "p", "u1", 1));
        let read: Vec<()> =
            index.in_namespace("a", |json| serde_json::from_slice::<u32>(json).map(|_| ()));
        assert!(read.is_empty());
        assert_eq!(metrics.dropped.get(), 1);
    }

    #[test]
    fn counts_by_metadata() {
        let index = NamespacedIndex::new("NetworkPolicy", Held::AsIs, IndexMetrics::default());
        index.load([policy("a", "p", "u1", 1), policy("b", "q", "u2", 2)]);
        assert_eq!(index.count(|m| m.namespace.as_deref() == Some("b")), 1);
        assert_eq!(index.count(|_| true), 2);
    }
}
