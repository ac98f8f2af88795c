//! The backend-independent state machine: the in-memory key space every
//! backend reads from, and the evaluation of transactions against it. Keeping
//! this in one place is what makes [`crate::MemoryStore`] and
//! [`crate::SqliteStore`] agree on every revision, version and event.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use crate::{Compare, Event, EventKind, KeyValue, Op, Revision, Txn, TxnResponse};

/// The events of one revision, in the order the transaction produced them.
pub(crate) type RevisionEvents = (Revision, Vec<Event>);

/// What the replica keeps of one key: everything but the key, which is the
/// map's (a large key space holds each key once).
#[derive(Debug, Clone)]
struct Slot {
    value: Arc<[u8]>,
    create_revision: Revision,
    mod_revision: Revision,
    version: i64,
}

impl Slot {
    fn of(kv: &KeyValue, keep_value: bool) -> Self {
        Self {
            value: if keep_value {
                Arc::clone(&kv.value)
            } else {
                no_value()
            },
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
        }
    }

    fn key_value(&self, key: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Arc::clone(&self.value),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
        }
    }
}

/// The committed key space and the revision it is at.
#[derive(Debug)]
pub(crate) struct Replica {
    keys: BTreeMap<Box<str>, Slot>,
    revision: Revision,
    /// Whether values are kept. A backend that serves reads from its own
    /// durable copy keeps only what transactions compare on, so the values
    /// are not held in memory twice (once here, once in every reader's cache).
    values: bool,
}

impl Default for Replica {
    fn default() -> Self {
        Self {
            keys: BTreeMap::new(),
            revision: 0,
            values: true,
        }
    }
}

impl Replica {
    /// A replica of revisions and versions only, for a backend that reads
    /// values from durable storage; the values of `keys` are dropped.
    pub(crate) fn metadata_only(
        keys: impl IntoIterator<Item = KeyValue>,
        revision: Revision,
    ) -> Self {
        Self {
            keys: keys
                .into_iter()
                .map(|kv| (Box::from(kv.key.as_str()), Slot::of(&kv, false)))
                .collect(),
            revision,
            values: false,
        }
    }

    pub(crate) fn revision(&self) -> Revision {
        self.revision
    }

    pub(crate) fn get(&self, key: &str) -> Option<KeyValue> {
        debug_assert!(self.values, "a metadata-only replica has no values to read");
        self.keys
            .get_key_value(key)
            .map(|(key, slot)| slot.key_value(key))
    }

    pub(crate) fn range(&self, prefix: &str) -> Vec<KeyValue> {
        debug_assert!(self.values, "a metadata-only replica has no values to read");
        self.keys
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, slot)| slot.key_value(key))
            .collect()
    }

    /// Applies revisions produced by a [`Batch`] evaluated against this very
    /// replica; replaying events (rather than merging the batch's overlay)
    /// keeps one code path for the replica, the durable log and watchers.
    pub(crate) fn apply(&mut self, revisions: &[RevisionEvents]) {
        for (revision, events) in revisions {
            debug_assert_eq!(*revision, self.revision + 1, "revisions must be contiguous");
            for event in events {
                match event.kind {
                    EventKind::Put => {
                        let slot = Slot::of(&event.kv, self.values);
                        match self.keys.get_mut(event.kv.key.as_str()) {
                            Some(held) => *held = slot,
                            None => {
                                self.keys.insert(Box::from(event.kv.key.as_str()), slot);
                            }
                        }
                    }
                    EventKind::Delete => {
                        self.keys.remove(event.kv.key.as_str());
                    }
                }
            }
            self.revision = *revision;
        }
    }
}

/// A group of transactions evaluated one after another on top of a replica
/// without touching it, so that a batch whose commit fails leaves no trace.
pub(crate) struct Batch<'a> {
    base: &'a Replica,
    /// Keys written by earlier transactions of the batch; `None` is a deletion.
    overlay: HashMap<String, Option<Slot>>,
    revision: Revision,
    revisions: Vec<RevisionEvents>,
}

impl<'a> Batch<'a> {
    pub(crate) fn new(base: &'a Replica) -> Self {
        Self {
            base,
            overlay: HashMap::new(),
            revision: base.revision,
            revisions: Vec::new(),
        }
    }

    fn lookup(&self, key: &str) -> Option<&Slot> {
        match self.overlay.get(key) {
            Some(entry) => entry.as_ref(),
            None => self.base.keys.get(key),
        }
    }

    fn holds(&self, compare: &Compare) -> bool {
        match compare {
            Compare::ModRevision { key, revision } => {
                self.lookup(key).map_or(0, |kv| kv.mod_revision) == *revision
            }
            Compare::Exists { key } => self.lookup(key).is_some(),
            Compare::Absent { key } => self.lookup(key).is_none(),
        }
    }

    /// Evaluates `txn` against the replica plus every earlier transaction of
    /// the batch. Ops apply in order, so a later op of the same transaction
    /// sees an earlier one (a put then a delete of one key leaves it absent).
    pub(crate) fn execute(&mut self, txn: &Txn) -> TxnResponse {
        let succeeded = txn.compares.iter().all(|compare| self.holds(compare));
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        let next = self.revision + 1;
        let mut events = Vec::new();
        for op in ops {
            match op {
                Op::Put { key, value } => {
                    let (create_revision, version) = match self.lookup(key) {
                        Some(existing) => (existing.create_revision, existing.version + 1),
                        None => (next, 1),
                    };
                    let kv = KeyValue {
                        key: key.clone(),
                        value: Arc::from(value.as_slice()),
                        create_revision,
                        mod_revision: next,
                        version,
                    };
                    self.overlay.insert(key.clone(), Some(Slot::of(&kv, true)));
                    events.push(Event {
                        kind: EventKind::Put,
                        kv,
                    });
                }
                Op::Delete { key } => {
                    if self.lookup(key).is_none() {
                        continue;
                    }
                    self.overlay.insert(key.clone(), None);
                    events.push(Event {
                        kind: EventKind::Delete,
                        kv: deleted(key.clone(), next),
                    });
                }
            }
        }
        if !events.is_empty() {
            self.revision = next;
            self.revisions.push((next, events));
        }
        TxnResponse {
            succeeded,
            revision: self.revision,
        }
    }

    /// The revisions the batch produced, oldest first; empty if it wrote nothing.
    pub(crate) fn into_revisions(self) -> Vec<RevisionEvents> {
        self.revisions
    }
}

/// The empty value, shared so that keys without one allocate nothing.
pub(crate) fn no_value() -> Arc<[u8]> {
    static EMPTY: LazyLock<Arc<[u8]>> = LazyLock::new(|| Arc::from(&[][..]));
    Arc::clone(&EMPTY)
}

/// The key-value of a deletion event, in etcd's shape: only the key and the
/// revision of the deletion are meaningful.
pub(crate) fn deleted(key: String, revision: Revision) -> KeyValue {
    KeyValue {
        key,
        value: no_value(),
        create_revision: 0,
        mod_revision: revision,
        version: 0,
    }
}

/// The events of `events` whose key starts with `prefix`.
pub(crate) fn matching(events: &[Event], prefix: &str) -> Vec<Event> {
    events
        .iter()
        .filter(|event| event.kv.key.starts_with(prefix))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_transactions_of_a_batch_see_earlier_ones() {
        let replica = Replica::default();
        let mut batch = Batch::new(&replica);
        let first = batch.execute(
            &Txn::new()
                .when(Compare::Absent { key: "a".into() })
                .put("a", "1"),
        );
        let second = batch.execute(
            &Txn::new()
                .when(Compare::Absent { key: "a".into() })
                .put("a", "2"),
        );
        let third = batch.execute(
            &Txn::new()
                .when(Compare::ModRevision {
                    key: "a".into(),
                    revision: 1,
                })
                .put("a", "3"),
        );
        assert!(first.succeeded && !second.succeeded && third.succeeded);
        assert_eq!((first.revision, second.revision, third.revision), (1, 1, 2));
        // The replica is untouched until the batch is applied.
        assert_eq!(replica.revision(), 0);
        let revisions = batch.into_revisions();
        let mut replica = replica;
        replica.apply(&revisions);
        let kv = replica.get("a").expect("a was written");
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (1, 2, 2));
        assert_eq!(&*kv.value, b"3");
    }

    #[test]
    fn put_then_delete_in_one_txn() {
        let replica = Replica::default();
        let mut batch = Batch::new(&replica);
        let response = batch.execute(&Txn::new().put("k", "v").delete("k").delete("missing"));
        assert_eq!(response.revision, 1);
        let revisions = batch.into_revisions();
        assert_eq!(revisions.len(), 1);
        let kinds: Vec<_> = revisions[0].1.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec![EventKind::Put, EventKind::Delete]);
        let mut replica = replica;
        replica.apply(&revisions);
        assert!(replica.get("k").is_none());
        assert_eq!(replica.revision(), 1);
    }
}
