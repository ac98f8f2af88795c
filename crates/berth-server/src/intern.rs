//! Shared copies of strings that many records repeat: the cache's task
//! headers (groups, statuses, instance ids) and the placement lanes'
//! instances (attribute names and values) hold one `Arc<str>` each instead
//! of a string per record.

use std::collections::HashSet;
use std::sync::Arc;

/// Interns between purges of the strings nobody else holds any more.
const INTERNS_PER_PURGE: usize = 16 * 1024;

#[derive(Debug, Default)]
pub struct Interner {
    held: HashSet<Arc<str>>,
    since_purge: usize,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> Arc<str> {
        self.since_purge += 1;
        if self.since_purge >= INTERNS_PER_PURGE {
            self.since_purge = 0;
            self.held.retain(|held| Arc::strong_count(held) > 1);
        }
        if let Some(held) = self.held.get(s) {
            return Arc::clone(held);
        }
        let held: Arc<str> = Arc::from(s);
        self.held.insert(Arc::clone(&held));
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_are_one_and_unheld_ones_go() {
        let mut interner = Interner::default();
        let a = interner.intern("RUNNING");
        let b = interner.intern("RUNNING");
        assert!(Arc::ptr_eq(&a, &b));
        drop((a, b));
        for i in 0..INTERNS_PER_PURGE {
            drop(interner.intern(&i.to_string()));
        }
        // Only those interned since the purge are left.
        assert!(interner.held.len() < 8, "{} held", interner.held.len());
        assert!(!interner.held.contains("RUNNING"));
    }
}
