//! Values the cache keeps compressed: LZ4 against a dictionary made of
//! recent values of the same kind.
//!
//! Tasks are most of what a large cluster holds, and one task's JSON is
//! nearly another's: the same cluster, task definition and instance ARNs,
//! the same field names and statuses, with only ids and timestamps told
//! apart. Against a dictionary holding a sibling, LZ4 keeps a 2.3 KB task in
//! about 200 bytes, where its decoded form takes about 3 KB of heap; a read
//! decompresses in about a microsecond before decoding.
//!
//! The dictionary follows the values: every few thousand values the newest
//! joins it, after the one adopted before, so it resembles what is being
//! written now (a task record written at launch looks less like a RUNNING
//! one than two RUNNING ones look alike); and a value that compresses
//! poorly (a task of another shape, a new task definition) joins it sooner.
//! Each packed value holds the dictionary it was packed with, so an old
//! dictionary lives exactly as long as values that need it, and changing
//! it seldom keeps the number alive small.

use std::sync::Arc;

use lz4_flex::block::{compress_prepend_size_with_dict, decompress_size_prepended_with_dict};

/// A value is poorly compressed when it keeps more than 1/`POOR_RATIO` of
/// its size; similar task records keep about 1/9.
const POOR_RATIO: usize = 4;
/// At least this many values between dictionary changes for poor
/// compression, so a stream of unlike values cannot make every pack also
/// rebuild the dictionary.
const VALUES_PER_CHANGE: usize = 64;
/// The newest value joins the dictionary after this many values anyway.
const VALUES_PER_REFRESH: usize = 4096;
/// The dictionary holds at most this much: LZ4 hashes it on every pack.
const MAX_DICTIONARY: usize = 8 * 1024;

/// One value, compressed.
#[derive(Debug, Clone)]
pub struct Packed {
    dictionary: Arc<[u8]>,
    bytes: Box<[u8]>,
}

/// The value was not packed by [`Packer::pack`] (a bug, not bad input).
#[derive(Debug, thiserror::Error)]
#[error("cannot unpack a cached value: {0}")]
pub struct UnpackError(#[from] lz4_flex::block::DecompressError);

impl Packed {
    pub fn unpack(&self) -> Result<Vec<u8>, UnpackError> {
        Ok(decompress_size_prepended_with_dict(
            &self.bytes,
            &self.dictionary,
        )?)
    }

    /// Heap bytes this value holds of its own (the dictionary is shared).
    #[cfg(test)]
    pub fn packed_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Packs the values of one kind.
#[derive(Debug)]
pub struct Packer {
    dictionary: Arc<[u8]>,
    since_change: usize,
}

impl Default for Packer {
    fn default() -> Self {
        Self {
            dictionary: Arc::from(Vec::new()),
            since_change: VALUES_PER_CHANGE,
        }
    }
}

impl Packer {
    pub fn pack(&mut self, value: &[u8]) -> Packed {
        let mut bytes = compress_prepend_size_with_dict(value, &self.dictionary);
        self.since_change += 1;
        let poor = bytes.len() * POOR_RATIO > value.len();
        if (poor && self.since_change > VALUES_PER_CHANGE) || self.since_change > VALUES_PER_REFRESH
        {
            self.adopt(value);
            bytes = compress_prepend_size_with_dict(value, &self.dictionary);
        }
        Packed {
            dictionary: Arc::clone(&self.dictionary),
            // The vector was sized for the worst case; this trims it.
            bytes: bytes.into_boxed_slice(),
        }
    }

    /// Makes `value` the newest part of the dictionary, keeping the newest
    /// bytes of the old one before it while they fit.
    fn adopt(&mut self, value: &[u8]) {
        let value = &value[value.len().saturating_sub(MAX_DICTIONARY)..];
        let kept = (MAX_DICTIONARY - value.len()).min(self.dictionary.len());
        let mut dictionary = Vec::with_capacity(kept + value.len());
        dictionary.extend_from_slice(&self.dictionary[self.dictionary.len() - kept..]);
        dictionary.extend_from_slice(value);
        self.dictionary = Arc::from(dictionary);
        self.since_change = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: u32, status: &str) -> Vec<u8> {
        format!(
            r#"{{"task":{{"taskArn":"arn:aws:ecs:us-east-1:000000000000:task/load/{id:032x}","clusterArn":"arn:aws:ecs:us-east-1:000000000000:cluster/load","lastStatus":"{status}","desiredStatus":"RUNNING","group":"family:web","containers":[{{"name":"app","image":"busybox","containerArn":"arn:aws:ecs:us-east-1:000000000000:container/load/{id:032x}/{id:08x}-0000-0000-0000-000000000000"}}]}},"instance_id":"{:032x}"}}"#,
            id % 7
        )
        .into_bytes()
    }

    #[test]
    fn values_round_trip_across_dictionary_changes() {
        let mut packer = Packer::default();
        let values: Vec<Vec<u8>> = (0..500)
            .map(|i| {
                if i % 100 < 50 {
                    task(i, "RUNNING")
                } else {
                    // Another shape entirely.
                    format!(
                        "{{\"other\":[{i},{i},{i}],\"padding\":\"{}\"}}",
                        "x".repeat(i as usize)
                    )
                    .into_bytes()
                }
            })
            .collect();
        let packed: Vec<Packed> = values.iter().map(|v| packer.pack(v)).collect();
        for (value, packed) in values.iter().zip(&packed) {
            assert_eq!(&packed.unpack().expect("unpacks"), value);
        }
    }

    #[test]
    fn similar_values_pack_small() {
        let mut packer = Packer::default();
        let first = task(1, "RUNNING");
        assert!(packer.pack(&first).packed_len() <= first.len() + 16);
        let sibling = task(2, "PENDING");
        let packed = packer.pack(&sibling);
        assert!(
            packed.packed_len() * 3 < sibling.len(),
            "{} of {}",
            packed.packed_len(),
            sibling.len()
        );
    }

    #[test]
    fn the_dictionary_stays_bounded() {
        let mut packer = Packer::default();
        for i in 0..2_000u32 {
            let value: Vec<u8> = (0..3_000u32)
                .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i) >> 24) as u8)
                .collect();
            packer.pack(&value);
            assert!(packer.dictionary.len() <= MAX_DICTIONARY);
        }
    }
}
