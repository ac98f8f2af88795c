//! Capacity provider strategies: which provider each new task of a launch
//! goes to (`base` first, then the remaining tasks split by `weight`), as
//! ECS distributes them; and the Fargate platform versions a launch may ask
//! for.

use std::collections::BTreeMap;

use berth_types::{CapacityProviderStrategyItem, EcsError};

/// The platform version `LATEST` stands for on Linux.
pub const LATEST_PLATFORM_VERSION: &str = "1.4.0";
/// The Linux platform versions Fargate still offers.
const PLATFORM_VERSIONS: [&str; 2] = ["1.3.0", "1.4.0"];

/// The platform version a Fargate task runs on, from the request's.
pub fn platform_version(requested: Option<&str>) -> Result<&'static str, EcsError> {
    match requested {
        None | Some("LATEST") => Ok(LATEST_PLATFORM_VERSION),
        Some(v) => PLATFORM_VERSIONS
            .into_iter()
            .find(|known| *known == v)
            .ok_or_else(|| {
                EcsError::invalid_parameter(format!(
                    "The specified platform version ({v}) does not exist."
                ))
            }),
    }
}

/// Assigns `count` new tasks to the strategy's providers, given how many
/// tasks each provider already runs for the same service (empty for a
/// RunTask). Tasks fill the provider with a `base` up to it; after that
/// each goes to the provider furthest below its share of `weight`, so
/// `{A base 2 weight 1, B weight 3}` puts 10 tasks as A 4, B 6. Providers
/// with weight 0 receive only their base.
///
/// Errors when no task could go anywhere (every weight 0 and no base left).
pub fn distribute(
    strategy: &[CapacityProviderStrategyItem],
    existing: &BTreeMap<String, usize>,
    count: usize,
) -> Result<Vec<String>, EcsError> {
    let mut counts: Vec<usize> = strategy
        .iter()
        .map(|item| existing.get(&item.capacity_provider).copied().unwrap_or(0))
        .collect();
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let base = strategy
            .iter()
            .zip(&counts)
            .position(|(item, n)| usize::try_from(item.base).is_ok_and(|base| *n < base));
        let chosen = base.or_else(|| {
            // Compare (beyond_base + 1) / weight across providers without
            // floating point: a/w < b/v  ⇔  a·v < b·w.
            strategy
                .iter()
                .zip(&counts)
                .enumerate()
                .filter(|(_, (item, _))| item.weight > 0)
                .map(|(i, (item, n))| {
                    let base = usize::try_from(item.base).unwrap_or(0);
                    let beyond = n.saturating_sub(base) as u128 + 1;
                    (i, beyond, item.weight.unsigned_abs() as u128)
                })
                .min_by(|(i, a, w), (j, b, v)| (a * v).cmp(&(b * w)).then(i.cmp(j)))
                .map(|(i, _, _)| i)
        });
        let Some(i) = chosen else {
            return Err(EcsError::invalid_parameter(
                "The capacity provider strategy has no capacity provider with a weight greater than 0.",
            ));
        };
        counts[i] += 1;
        out.push(strategy[i].capacity_provider.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, base: i32, weight: i32) -> CapacityProviderStrategyItem {
        CapacityProviderStrategyItem {
            capacity_provider: name.into(),
            base,
            weight,
        }
    }

    fn tally(names: &[String]) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for n in names {
            *out.entry(n.clone()).or_default() += 1;
        }
        out
    }

    #[test]
    fn the_documented_example_base_then_weights() {
        let strategy = [item("FARGATE", 2, 1), item("FARGATE_SPOT", 0, 3)];
        let out = distribute(&strategy, &BTreeMap::new(), 10).unwrap();
        assert_eq!(&out[..2], ["FARGATE", "FARGATE"]);
        let t = tally(&out);
        assert_eq!(t["FARGATE"], 4);
        assert_eq!(t["FARGATE_SPOT"], 6);
    }

    #[test]
    fn existing_tasks_count_towards_base_and_shares() {
        let strategy = [item("FARGATE", 2, 1), item("FARGATE_SPOT", 0, 3)];
        let existing = BTreeMap::from([("FARGATE".to_owned(), 2), ("FARGATE_SPOT".to_owned(), 3)]);
        let out = distribute(&strategy, &existing, 3).unwrap();
        // 5 more on top of F 2 (base) + S 3: the weighted part ends 1:3.
        let t = tally(&out);
        assert_eq!(t.get("FARGATE").copied().unwrap_or(0), 1);
        assert_eq!(t["FARGATE_SPOT"], 2);
    }

    #[test]
    fn weight_zero_gets_only_its_base() {
        let strategy = [item("FARGATE_SPOT", 1, 0), item("FARGATE", 0, 1)];
        let out = distribute(&strategy, &BTreeMap::new(), 4).unwrap();
        assert_eq!(out, ["FARGATE_SPOT", "FARGATE", "FARGATE", "FARGATE"]);
    }

    #[test]
    fn all_weights_zero_and_base_used_is_an_error() {
        let strategy = [item("FARGATE", 1, 0)];
        assert_eq!(
            distribute(&strategy, &BTreeMap::new(), 1).unwrap(),
            ["FARGATE"]
        );
        assert!(distribute(&strategy, &BTreeMap::new(), 2).is_err());
    }

    #[test]
    fn platform_versions() {
        assert_eq!(platform_version(None).unwrap(), "1.4.0");
        assert_eq!(platform_version(Some("LATEST")).unwrap(), "1.4.0");
        assert_eq!(platform_version(Some("1.3.0")).unwrap(), "1.3.0");
        assert!(platform_version(Some("1.9.0")).is_err());
    }

    proptest::proptest! {
        #[test]
        fn shares_follow_weights(w1 in 1i32..20, w2 in 1i32..20, base in 0i32..5, rounds in 1usize..8) {
            let strategy = [item("A", base, w1), item("B", 0, w2)];
            let total = usize::try_from(base).unwrap() + rounds * usize::try_from(w1 + w2).unwrap();
            let t = tally(&distribute(&strategy, &BTreeMap::new(), total).unwrap());
            proptest::prop_assert_eq!(t.get("A").copied().unwrap_or(0), usize::try_from(base).unwrap() + rounds * usize::try_from(w1).unwrap());
        }
    }
}
