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
//! The dictionary is one recent value, chosen by trial: every so often (and
//! soon after a value packs poorly: a task of another shape, a new task
//! definition) a value becomes a candidate, the next values are packed
//! against both, each keeps the smaller, and the candidate replaces the
//! dictionary if it did better over the trial. Which record makes the best
//! dictionary is not obvious ahead: a RUNNING task's serves PENDING ones
//! better than a PENDING one serves RUNNING ones. Each packed value holds
//! the dictionary it was packed with, so an old dictionary lives exactly as
//! long as values that need it.

use std::sync::Arc;

use lz4_flex::block::{compress_prepend_size_with_dict, decompress_size_prepended_with_dict};

/// A value is poorly compressed when it keeps more than 1/`POOR_RATIO` of
/// its size; task records keep about 1/8.
const POOR_RATIO: usize = 4;
/// A trial starts after this many values without one...
const VALUES_BETWEEN_TRIALS: usize = 1024;
/// ...or after this many when a value packed poorly.
const VALUES_BEFORE_EARLY_TRIAL: usize = 64;
/// How many values a trial packs both ways.
const TRIAL_VALUES: usize = 32;
/// A dictionary is at most the last this many bytes of a value: LZ4 hashes
/// all of it on every pack, and its window is 64 KiB anyway.
const MAX_DICTIONARY: usize = 4 * 1024;

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
    trial: Option<Trial>,
    since_trial: usize,
}

/// A candidate dictionary and how the two did so far, in packed bytes.
#[derive(Debug)]
struct Trial {
    candidate: Arc<[u8]>,
    current_bytes: usize,
    candidate_bytes: usize,
    values: usize,
}

impl Default for Packer {
    fn default() -> Self {
        Self {
            dictionary: Arc::from(Vec::new()),
            trial: None,
            since_trial: VALUES_BETWEEN_TRIALS,
        }
    }
}

fn dictionary_of(value: &[u8]) -> Arc<[u8]> {
    Arc::from(&value[value.len().saturating_sub(MAX_DICTIONARY)..])
}

impl Packer {
    pub fn pack(&mut self, value: &[u8]) -> Packed {
        let bytes = compress_prepend_size_with_dict(value, &self.dictionary);
        let mut packed = Packed {
            dictionary: Arc::clone(&self.dictionary),
            // The vector was sized for the worst case; this trims it.
            bytes: bytes.into_boxed_slice(),
        };
        match &mut self.trial {
            Some(trial) => {
                let other = compress_prepend_size_with_dict(value, &trial.candidate);
                trial.current_bytes += packed.bytes.len();
                trial.candidate_bytes += other.len();
                trial.values += 1;
                if other.len() < packed.bytes.len() {
                    packed = Packed {
                        dictionary: Arc::clone(&trial.candidate),
                        bytes: other.into_boxed_slice(),
                    };
                }
                if trial.values == TRIAL_VALUES {
                    if trial.candidate_bytes < trial.current_bytes {
                        self.dictionary = Arc::clone(&trial.candidate);
                    }
                    self.trial = None;
                }
            }
            None => {
                self.since_trial += 1;
                let poor = packed.bytes.len() * POOR_RATIO > value.len();
                if self.since_trial >= VALUES_BETWEEN_TRIALS
                    || (poor && self.since_trial >= VALUES_BEFORE_EARLY_TRIAL)
                {
                    self.since_trial = 0;
                    self.trial = Some(Trial {
                        candidate: dictionary_of(value),
                        current_bytes: 0,
                        candidate_bytes: 0,
                        values: 0,
                    });
                }
            }
        }
        packed
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
        // The first value starts a trial that the next ones settle.
        for i in 0..=TRIAL_VALUES as u32 {
            packer.pack(&task(i, "RUNNING"));
        }
        let sibling = task(1_000, "PENDING");
        let packed = packer.pack(&sibling);
        assert!(
            packed.packed_len() * 3 < sibling.len(),
            "{} of {}",
            packed.packed_len(),
            sibling.len()
        );
    }

    #[test]
    fn the_dictionary_follows_the_values() {
        let mut packer = Packer::default();
        let other = |i: u32| {
            format!("{{\"other\":{i},\"padding\":\"{}\"}}", "y".repeat(1_500)).into_bytes()
        };
        for i in 0..100 {
            packer.pack(&other(i));
        }
        // Tasks now: the first packs poorly against the old dictionary and
        // starts a trial soon; within a trial's values they pack small.
        for i in 0..(VALUES_BEFORE_EARLY_TRIAL + TRIAL_VALUES) as u32 + 1 {
            packer.pack(&task(i, "RUNNING"));
        }
        let value = task(5_000, "RUNNING");
        let best = compress_prepend_size_with_dict(&value, &task(4_999, "RUNNING")).len();
        assert!(packer.pack(&value).packed_len() <= best + 8);
    }

    #[test]
    fn the_dictionary_stays_bounded() {
        let mut packer = Packer::default();
        for i in 0..2_000u32 {
            let value: Vec<u8> = (0..10_000u32)
                .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i) >> 24) as u8)
                .collect();
            packer.pack(&value);
            assert!(packer.dictionary.len() <= MAX_DICTIONARY);
        }
    }
}
