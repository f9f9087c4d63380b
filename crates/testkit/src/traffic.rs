//! Traffic splits as tests check them: send many requests through the router, count who
//! answered, and compare with the expected percents within a statistical tolerance: five
//! standard deviations of the binomial count, so a correct split fails such a check about once
//! in 1.7 million, while a split off by 10 points over 1000 requests fails it for sure.

use std::collections::BTreeMap;

use crate::{Reply, RouterClient};

/// How many concurrent streams [`tally`] sends on.
const STREAMS: usize = 4;

/// Who answered a reply: its trimmed body when 200, else `HTTP <status>`.
pub fn who(reply: &Reply) -> String {
    match reply.status {
        200 => reply.body.trim().to_string(),
        s => format!("HTTP {s}"),
    }
}

/// Send `n` GETs of `path` to `host` and count the answers by [`who`].
pub async fn tally(
    client: &RouterClient,
    host: &str,
    path: &str,
    n: usize,
) -> BTreeMap<String, usize> {
    let mut tasks = tokio::task::JoinSet::new();
    for stream in 0..STREAMS {
        let (client, host, path) = (client.clone(), host.to_string(), path.to_string());
        let count = n / STREAMS + usize::from(stream < n % STREAMS);
        tasks.spawn(async move {
            let mut seen = Vec::with_capacity(count);
            for _ in 0..count {
                match client.get(&host, &path).await {
                    Ok(reply) => seen.push(who(&reply)),
                    Err(e) => seen.push(format!("error: {e}")),
                }
            }
            seen
        });
    }
    let mut counts = BTreeMap::new();
    while let Some(seen) = tasks.join_next().await {
        for w in seen.expect("a tally stream panicked") {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    counts
}

/// Assert that `counts` (of `n` answers) hold exactly the keys of `expected` and that each
/// key's share is its expected percent within five binomial standard deviations.
pub fn assert_split(counts: &BTreeMap<String, usize>, expected: &[(&str, u32)]) {
    let n: usize = counts.values().sum();
    let unexpected: Vec<&String> = counts
        .keys()
        .filter(|k| !expected.iter().any(|(e, p)| e == k && *p > 0))
        .collect();
    assert!(
        unexpected.is_empty(),
        "answers from {unexpected:?}, which should get no traffic; counts {counts:?}"
    );
    for (key, percent) in expected {
        let p = f64::from(*percent) / 100.0;
        let got = *counts.get(*key).unwrap_or(&0) as f64;
        let mean = p * n as f64;
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        assert!(
            (got - mean).abs() <= 5.0 * sd,
            "{key:?}: {got} of {n} answers, expected {percent}% ({mean:.0} ± {:.0}); counts {counts:?}",
            5.0 * sd
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn a_fair_split_passes() {
        assert_split(&counts(&[("a", 520), ("b", 480)]), &[("a", 50), ("b", 50)]);
        assert_split(&counts(&[("a", 1000)]), &[("a", 100), ("b", 0)]);
    }

    #[test]
    #[should_panic(expected = "expected 50%")]
    fn ten_points_off_fails() {
        assert_split(&counts(&[("a", 600), ("b", 400)]), &[("a", 50), ("b", 50)]);
    }

    #[test]
    #[should_panic(expected = "should get no traffic")]
    fn a_stray_answer_fails() {
        assert_split(&counts(&[("a", 999), ("c", 1)]), &[("a", 100)]);
    }
}
