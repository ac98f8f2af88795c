//! Task-size units: parsing the task-level `cpu` / `memory` strings ECS
//! accepts (`"1024"`, `"1 vCPU"`, `".25 vcpu"`, `"2GB"`, `"2 GB"`) into CPU
//! units and MiB, and the Fargate table of valid cpu/memory combinations.
//!
//! Parsing is exact: a fractional vCPU or GB value is accepted only when it
//! lands on a whole number of units / MiB (`".25 vCPU"` is 256 units,
//! `"0.1 vCPU"` is rejected), so normalization never rounds behind the
//! caller's back.

/// CPU units in one vCPU.
pub const UNITS_PER_VCPU: u32 = 1024;
/// MiB in one GB, as ECS counts it.
pub const MIB_PER_GB: u32 = 1024;
/// Smallest task-level `cpu` ECS accepts for EC2/EXTERNAL (0.125 vCPU).
pub const TASK_CPU_MIN: u32 = 128;
/// Largest task-level `cpu` ECS accepts for EC2/EXTERNAL (192 vCPU).
pub const TASK_CPU_MAX: u32 = 196_608;

/// The largest value either parser returns: task sizes are echoed in
/// places the model types as `i32`, so anything above can't round-trip.
const MAX_VALUE: u64 = i32::MAX as u64;

/// Parses a task-level `cpu` string into CPU units.
///
/// Accepts a plain integer (`"512"`) or a vCPU amount with the
/// case-insensitive suffix `vcpu`, with or without a space
/// (`"1 vCPU"`, `"1vcpu"`, `".25 vCPU"`, `"0.5 vCPU"`). Returns `None` for
/// anything else, for zero, and for values that don't fit an `i32`.
/// Range rules (EC2 128–196608, the Fargate table) are the caller's.
pub fn parse_task_cpu(s: &str) -> Option<u32> {
    parse_with_suffix(s, "vcpu", UNITS_PER_VCPU)
}

/// Parses a task-level `memory` string into MiB.
///
/// Accepts a plain integer in MiB (`"2048"`) or a GB amount with the
/// case-insensitive suffix `gb`, with or without a space (`"2GB"`,
/// `"2 GB"`, `"0.5GB"`). Returns `None` for anything else, for zero, and
/// for values that don't fit an `i32`.
pub fn parse_task_memory(s: &str) -> Option<u32> {
    parse_with_suffix(s, "gb", MIB_PER_GB)
}

fn parse_with_suffix(s: &str, suffix: &str, scale: u32) -> Option<u32> {
    let trimmed = s.trim();
    let lower = trimmed.to_ascii_lowercase();
    let value = match lower.strip_suffix(suffix) {
        Some(number) => scaled_decimal(number.trim_end(), scale)?,
        None => plain_integer(&lower)?,
    };
    if value == 0 || value > MAX_VALUE {
        return None;
    }
    u32::try_from(value).ok()
}

/// Digits only: no sign, no decimal point, no exponent, so `"1e3"` or
/// `"+512"` are rejected rather than guessed at.
fn plain_integer(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `digits[.digits]` or `.digits`, multiplied by `scale`; `None` unless the
/// product is a whole number.
fn scaled_decimal(s: &str, scale: u32) -> Option<u64> {
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    // Bounded lengths keep every intermediate product inside u128.
    if whole.len() > 12 || frac.len() > 18 {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole_value: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let frac_len = u32::try_from(frac.len()).ok()?;
    let denominator = 10u128.checked_pow(frac_len)?;
    let scale = u128::from(scale);
    let frac_scaled = frac_value.checked_mul(scale)?;
    if !frac_scaled.is_multiple_of(denominator) {
        return None;
    }
    let total = whole_value
        .checked_mul(scale)?
        .checked_add(frac_scaled / denominator)?;
    u64::try_from(total).ok()
}

/// Whether `memory_mib` is one of the memory sizes Fargate offers for
/// `cpu` units (the Linux table; Windows additionally needs cpu ≥ 1024,
/// which the caller checks).
pub fn fargate_combination_valid(cpu: u32, memory_mib: u32) -> bool {
    let stepped = |min: u32, max: u32, step: u32| {
        (min..=max).contains(&memory_mib) && (memory_mib - min).is_multiple_of(step)
    };
    match cpu {
        256 => matches!(memory_mib, 512 | 1024 | 2048),
        512 => stepped(1024, 4096, 1024),
        1024 => stepped(2048, 8192, 1024),
        2048 => stepped(4096, 16_384, 1024),
        4096 => stepped(8192, 30_720, 1024),
        8192 => stepped(16_384, 61_440, 4096),
        16_384 => stepped(32_768, 122_880, 8192),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_plain_and_vcpu_forms() {
        assert_eq!(parse_task_cpu("512"), Some(512));
        assert_eq!(parse_task_cpu(" 1024 "), Some(1024));
        assert_eq!(parse_task_cpu("1 vCPU"), Some(1024));
        assert_eq!(parse_task_cpu("1 vcpu"), Some(1024));
        assert_eq!(parse_task_cpu("1vcpu"), Some(1024));
        assert_eq!(parse_task_cpu("2 VCPU"), Some(2048));
        assert_eq!(parse_task_cpu(".25 vCPU"), Some(256));
        assert_eq!(parse_task_cpu("0.5 vCPU"), Some(512));
        assert_eq!(parse_task_cpu("0.125 vCPU"), Some(128));
        assert_eq!(parse_task_cpu("4. vCPU"), Some(4096));
        assert_eq!(parse_task_cpu("192 vCPU"), Some(196_608));
    }

    #[test]
    fn cpu_rejects_garbage() {
        for s in [
            "",
            " ",
            "vcpu",
            ". vCPU",
            "0",
            "0 vCPU",
            "-1",
            "+512",
            "1e3",
            "1.5",
            "abc",
            "0.1 vCPU",
            "1 cpu",
            "1 vCPUs",
            "1..2 vCPU",
            "99999999999999999999",
            "2097152 vCPU",
            "1 GB",
            "١٠٢٤",
        ] {
            assert_eq!(parse_task_cpu(s), None, "{s:?}");
        }
    }

    #[test]
    fn memory_plain_and_gb_forms() {
        assert_eq!(parse_task_memory("512"), Some(512));
        assert_eq!(parse_task_memory("2GB"), Some(2048));
        assert_eq!(parse_task_memory("2 GB"), Some(2048));
        assert_eq!(parse_task_memory("2 gb"), Some(2048));
        assert_eq!(parse_task_memory("0.5GB"), Some(512));
        assert_eq!(parse_task_memory("1.5 GB"), Some(1536));
        assert_eq!(parse_task_memory("120 GB"), Some(122_880));
    }

    #[test]
    fn memory_rejects_garbage() {
        for s in [
            "",
            "0",
            "0GB",
            "GB",
            "2 MB",
            "2GiB",
            "1.0001GB",
            "-2GB",
            "2 G B",
            "3000000 GB",
        ] {
            assert_eq!(parse_task_memory(s), None, "{s:?}");
        }
    }

    #[test]
    fn fargate_table() {
        assert!(fargate_combination_valid(256, 512));
        assert!(fargate_combination_valid(256, 2048));
        assert!(!fargate_combination_valid(256, 3072));
        assert!(!fargate_combination_valid(256, 4096));
        assert!(fargate_combination_valid(512, 1024));
        assert!(fargate_combination_valid(512, 4096));
        assert!(!fargate_combination_valid(512, 512));
        assert!(!fargate_combination_valid(512, 1536));
        assert!(fargate_combination_valid(1024, 2048));
        assert!(fargate_combination_valid(1024, 8192));
        assert!(!fargate_combination_valid(1024, 9216));
        assert!(fargate_combination_valid(2048, 16_384));
        assert!(fargate_combination_valid(4096, 30_720));
        assert!(!fargate_combination_valid(4096, 31_744));
        assert!(fargate_combination_valid(8192, 16_384));
        assert!(fargate_combination_valid(8192, 20_480));
        assert!(!fargate_combination_valid(8192, 17_408));
        assert!(fargate_combination_valid(16_384, 122_880));
        assert!(!fargate_combination_valid(16_384, 36_864));
        assert!(!fargate_combination_valid(128, 512));
        assert!(!fargate_combination_valid(3072, 8192));
        assert!(!fargate_combination_valid(u32::MAX, u32::MAX));
    }
}
