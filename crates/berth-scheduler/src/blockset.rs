//! An ordered set with rank and select, stored as a list of sorted blocks.
//!
//! The placement index needs "the smallest element", "how many elements are
//! below x" and "the r-th element" on sets of a few thousand entries that
//! change one element at a time. `BTreeSet` has no rank or select; sorted
//! blocks of `BLOCK..=2·BLOCK` elements give O(log n + n/BLOCK) for all of
//! them over contiguous memory, and loading a sorted `Vec` is a copy.

/// Target block size: small enough that an insert's shift is a short
/// memmove, large enough that summing block lengths for a rank stays cheap
/// at ECS's 5,000 instances per cluster.
const BLOCK: usize = 64;

#[derive(Debug, Clone)]
pub(crate) struct BlockSet<T> {
    /// Non-empty sorted blocks; every element of a block is below every
    /// element of the next.
    blocks: Vec<Vec<T>>,
}

impl<T> Default for BlockSet<T> {
    fn default() -> Self {
        BlockSet { blocks: Vec::new() }
    }
}

impl<T: Ord + Copy> BlockSet<T> {
    /// Builds from strictly increasing elements.
    pub(crate) fn from_sorted(sorted: &[T]) -> Self {
        debug_assert!(sorted.windows(2).all(|w| w[0] < w[1]));
        BlockSet {
            blocks: sorted.chunks(BLOCK).map(<[T]>::to_vec).collect(),
        }
    }

    pub(crate) fn first(&self) -> Option<&T> {
        self.blocks.first().and_then(|b| b.first())
    }

    /// Index of the first block whose last element is `>= x` (`blocks.len()`
    /// if x is above everything).
    fn block_for(&self, x: &T) -> usize {
        self.blocks
            .partition_point(|b| b.last().is_some_and(|last| last < x))
    }

    /// Inserts `x`; false if it was already present.
    pub(crate) fn insert(&mut self, x: T) -> bool {
        let Some(last_block) = self.blocks.len().checked_sub(1) else {
            self.blocks.push(vec![x]);
            return true;
        };
        let bi = self.block_for(&x).min(last_block);
        let block = &mut self.blocks[bi];
        let Err(at) = block.binary_search(&x) else {
            return false;
        };
        block.insert(at, x);
        if block.len() > 2 * BLOCK {
            let tail = block.split_off(BLOCK);
            self.blocks.insert(bi + 1, tail);
        }
        true
    }

    /// Removes `x`; false if it was absent.
    pub(crate) fn remove(&mut self, x: &T) -> bool {
        let bi = self.block_for(x);
        let Some(block) = self.blocks.get_mut(bi) else {
            return false;
        };
        let Ok(at) = block.binary_search(x) else {
            return false;
        };
        block.remove(at);
        // Merging small blocks keeps the block count (and so the cost of
        // `rank`/`select`) proportional to len / BLOCK under any churn.
        if block.len() < BLOCK / 4 {
            self.merge_around(bi);
        }
        true
    }

    fn merge_around(&mut self, bi: usize) {
        if self.blocks[bi].is_empty() {
            self.blocks.remove(bi);
            return;
        }
        let (left, right) = if bi + 1 < self.blocks.len() {
            (bi, bi + 1)
        } else if bi > 0 {
            (bi - 1, bi)
        } else {
            return;
        };
        let moved = self.blocks.remove(right);
        let merged = &mut self.blocks[left];
        merged.extend(moved);
        if merged.len() > 2 * BLOCK {
            let tail = merged.split_off(merged.len() / 2);
            self.blocks.insert(left + 1, tail);
        }
    }

    /// Number of elements below `x`.
    pub(crate) fn rank(&self, x: &T) -> usize {
        let bi = self.block_for(x);
        let before: usize = self.blocks[..bi].iter().map(Vec::len).sum();
        before
            + self
                .blocks
                .get(bi)
                .map_or(0, |b| b.partition_point(|e| e < x))
    }

    /// The element with `r` elements below it.
    pub(crate) fn select(&self, mut r: usize) -> Option<T> {
        for b in &self.blocks {
            match b.get(r) {
                Some(&x) => return Some(x),
                None => r -= b.len(),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Every operation agrees with `BTreeSet` (plus rank/select computed
        /// by iteration), across splits and merges.
        #[test]
        fn matches_btreeset(
            initial in proptest::collection::btree_set(0u16..1000, 0..300),
            ops in proptest::collection::vec((any::<bool>(), 0u16..1000), 0..800),
        ) {
            let sorted: Vec<u16> = initial.iter().copied().collect();
            let mut set = BlockSet::from_sorted(&sorted);
            let mut model = initial;
            for (insert, x) in ops {
                if insert {
                    prop_assert_eq!(set.insert(x), model.insert(x));
                } else {
                    prop_assert_eq!(set.remove(&x), model.remove(&x));
                }
                prop_assert_eq!(set.first(), model.first());
                prop_assert_eq!(set.rank(&x), model.range(..x).count());
                let r = usize::from(x) % (model.len() + 1);
                prop_assert_eq!(set.select(r), model.iter().nth(r).copied());
            }
            for b in &set.blocks {
                prop_assert!(!b.is_empty() && b.len() <= 2 * BLOCK);
            }
            let all: Vec<u16> = set.blocks.concat();
            prop_assert_eq!(all, model.into_iter().collect::<Vec<_>>());
        }
    }
}
