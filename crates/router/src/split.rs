//! Weighted traffic splitting: which revision of a route gets a request.
//!
//! [`pick_weighted`] is a pure function of the percents and a roll, so its distribution can be
//! proved exactly; the router supplies a uniformly random roll per request.

/// Picks the index whose weight band contains `roll`.
///
/// The weights are laid end to end on `0..total` (`total` = their sum); index `i` owns
/// `weights[i]` consecutive values, so a uniform `roll` in `0..total` picks `i` with probability
/// `weights[i] / total`. Zero weights are never picked while any weight is positive. A `roll`
/// past the end picks the last positive weight; an all-zero or empty list picks index 0.
pub fn pick_weighted(weights: &[u32], roll: u32) -> usize {
    let mut end = 0u64;
    let mut last_positive = 0;
    for (i, &w) in weights.iter().enumerate() {
        if w == 0 {
            continue;
        }
        end += u64::from(w);
        last_positive = i;
        if u64::from(roll) < end {
            return i;
        }
    }
    last_positive
}

/// The sum of the weights (saturating), i.e. the exclusive upper bound for a roll.
pub fn total_weight(weights: &[u32]) -> u32 {
    weights.iter().fold(0u32, |acc, &w| acc.saturating_add(w))
}

/// A uniformly random roll in `0..total` (0 when `total` is 0).
pub(crate) fn random_roll(total: u32) -> u32 {
    if total <= 1 {
        0
    } else {
        rand::random_range(0..total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bands_follow_the_weights() {
        let w = [80, 20];
        assert_eq!(pick_weighted(&w, 0), 0);
        assert_eq!(pick_weighted(&w, 79), 0);
        assert_eq!(pick_weighted(&w, 80), 1);
        assert_eq!(pick_weighted(&w, 99), 1);
    }

    #[test]
    fn zero_weights_are_skipped() {
        assert_eq!(pick_weighted(&[0, 100, 0], 0), 1);
        assert_eq!(pick_weighted(&[0, 100, 0], 99), 1);
        assert_eq!(pick_weighted(&[0, 100, 0], 500), 1);
        assert_eq!(pick_weighted(&[0, 0], 0), 0);
        assert_eq!(pick_weighted(&[], 0), 0);
    }

    #[test]
    fn random_rolls_follow_the_split() {
        let w = [80, 20];
        let mut counts = [0u32; 2];
        for _ in 0..20_000 {
            counts[pick_weighted(&w, random_roll(total_weight(&w)))] += 1;
        }
        let share = f64::from(counts[0]) / 20_000.0;
        assert!((0.78..=0.82).contains(&share), "80% split got {share}");
    }

    proptest! {
        /// Over every possible roll, each index is picked exactly `weight` times: the split is
        /// exact, not just approximately right.
        #[test]
        fn every_roll_distribution_is_exact(weights in prop::collection::vec(0u32..=100, 1..8)) {
            let total = total_weight(&weights);
            prop_assume!(total > 0);
            let mut counts = vec![0u32; weights.len()];
            for roll in 0..total {
                counts[pick_weighted(&weights, roll)] += 1;
            }
            prop_assert_eq!(counts, weights);
        }

        #[test]
        fn picks_are_always_in_range(
            weights in prop::collection::vec(any::<u32>(), 1..8),
            roll in any::<u32>(),
        ) {
            prop_assert!(pick_weighted(&weights, roll) < weights.len());
        }
    }
}
