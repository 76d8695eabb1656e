//! A Prometheus histogram read from a `/metrics` page: what the API server measured of its
//! calls to the webhook, and what the webhook measured of its own reviews.

use anyhow::{Context, Result, bail};

/// One histogram family, summed over every series that carries the wanted labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Cumulative counts by upper bound in seconds, ascending; the last bound is infinity.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    /// No observation: a family the exposition does not have yet.
    pub fn empty() -> Self {
        Self {
            buckets: Vec::new(),
            count: 0,
            sum: 0.0,
        }
    }

    /// Reads `family` from Prometheus text exposition, keeping the series whose labels
    /// include every `(name, value)` of `labels`.
    pub fn parse(exposition: &str, family: &str, labels: &[(&str, &str)]) -> Result<Self> {
        let wanted: Vec<String> = (labels.iter())
            .map(|(name, value)| format!("{name}=\"{value}\""))
            .collect();
        let mut histogram = Self {
            buckets: Vec::new(),
            count: 0,
            sum: 0.0,
        };
        for line in exposition.lines() {
            let Some(rest) = line.strip_prefix(family) else {
                continue;
            };
            let Some((series, value)) = rest.rsplit_once(' ') else {
                continue;
            };
            if !wanted.iter().all(|label| series.contains(label.as_str())) {
                continue;
            }
            let value: f64 = value
                .parse()
                .with_context(|| format!("bad sample value in {line:?}"))?;
            if series.starts_with("_sum") {
                histogram.sum += value;
            } else if series.starts_with("_count") {
                histogram.count += value as u64;
            } else if series.starts_with("_bucket{") {
                let bound = label(series, "le").with_context(|| format!("no le in {line:?}"))?;
                let bound: f64 = if bound == "+Inf" {
                    f64::INFINITY
                } else {
                    bound.parse()?
                };
                match histogram.buckets.iter_mut().find(|(b, _)| *b == bound) {
                    Some((_, count)) => *count += value as u64,
                    None => histogram.buckets.push((bound, value as u64)),
                }
            }
        }
        if histogram.buckets.is_empty() {
            bail!("no {family} series with {}", wanted.join(","));
        }
        histogram.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(histogram)
    }

    /// The calls between `earlier` and this reading.
    pub fn since(&self, earlier: &Self) -> Self {
        let before = |bound: f64| {
            (earlier.buckets.iter())
                .find(|(b, _)| *b == bound)
                .map_or(0, |(_, count)| *count)
        };
        Self {
            buckets: (self.buckets.iter())
                .map(|&(bound, count)| (bound, count.saturating_sub(before(bound))))
                .collect(),
            count: self.count.saturating_sub(earlier.count),
            sum: self.sum - earlier.sum,
        }
    }

    /// This reading and `other` together (both of the same webhook, so the same buckets, or
    /// one of them [`Self::empty`]).
    pub fn plus(&self, other: &Self) -> Self {
        if self.buckets.is_empty() {
            return other.clone();
        }
        if other.buckets.is_empty() {
            return self.clone();
        }
        Self {
            buckets: (self.buckets.iter().zip(&other.buckets))
                .map(|(&(bound, a), &(_, b))| (bound, a + b))
                .collect(),
            count: self.count + other.count,
            sum: self.sum + other.sum,
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The `q` quantile, interpolated linearly inside its bucket as Prometheus'
    /// `histogram_quantile` does. As coarse as the API server's buckets (5 ms is the first).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut lower = (0.0, 0);
        for &(bound, count) in &self.buckets {
            if count as f64 >= rank {
                if bound.is_infinite() {
                    return Some(lower.0);
                }
                let inside = (count - lower.1) as f64;
                let share = if inside == 0.0 {
                    1.0
                } else {
                    (rank - lower.1 as f64) / inside
                };
                return Some(lower.0 + (bound - lower.0) * share);
            }
            lower = (bound, count);
        }
        None
    }
}

fn label<'a>(series: &'a str, name: &str) -> Option<&'a str> {
    let start = series.find(&format!("{name}=\""))? + name.len() + 2;
    let len = series[start..].find('"')?;
    Some(&series[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAMILY: &str = "apiserver_admission_webhook_admission_duration_seconds";
    use testkit::names::WEBHOOK;
    const CREATE: &[(&str, &str)] = &[("name", WEBHOOK), ("operation", "CREATE")];

    fn exposition(fast: u64, slow: u64, sum: f64) -> String {
        let mut text = String::from(
            "# HELP apiserver_admission_webhook_admission_duration_seconds [STABLE] ...\n\
             # TYPE apiserver_admission_webhook_admission_duration_seconds histogram\n",
        );
        for (rejected, share) in [("false", 1), ("true", 0)] {
            let series = |le: &str| {
                format!(
                    "apiserver_admission_webhook_admission_duration_seconds_bucket{{le=\"{le}\",name=\"{WEBHOOK}\",operation=\"CREATE\",rejected=\"{rejected}\",type=\"validating\"}}"
                )
            };
            let (f, s) = (fast * share, slow * share);
            text += &format!("{} {f}\n", series("0.005"));
            text += &format!("{} {}\n", series("0.025"), f + s);
            text += &format!("{} {}\n", series("+Inf"), f + s);
        }
        text += &format!(
            "apiserver_admission_webhook_admission_duration_seconds_sum{{name=\"{WEBHOOK}\",operation=\"CREATE\",rejected=\"false\",type=\"validating\"}} {sum}\n\
             apiserver_admission_webhook_admission_duration_seconds_count{{name=\"{WEBHOOK}\",operation=\"CREATE\",rejected=\"false\",type=\"validating\"}} {}\n\
             apiserver_admission_webhook_admission_duration_seconds_count{{name=\"other\",operation=\"CREATE\",rejected=\"false\",type=\"validating\"}} 99\n\
             apiserver_admission_webhook_admission_duration_seconds_count{{name=\"{WEBHOOK}\",operation=\"UPDATE\",rejected=\"false\",type=\"validating\"}} 7\n",
            fast + slow
        );
        text
    }

    #[test]
    fn reads_only_the_series_with_the_wanted_labels() {
        let histogram = Histogram::parse(&exposition(90, 10, 0.3), FAMILY, CREATE).unwrap();
        assert_eq!(histogram.count, 100);
        assert_eq!(
            histogram.buckets,
            vec![(0.005, 90), (0.025, 100), (f64::INFINITY, 100)]
        );
        assert!((histogram.mean().unwrap() - 0.003).abs() < 1e-12);
    }

    #[test]
    fn a_missing_series_is_an_error() {
        let error = Histogram::parse(&exposition(1, 0, 0.001), FAMILY, &[("name", "nobody")]);
        assert!(error.unwrap_err().to_string().contains("name=\"nobody\""));
    }

    #[test]
    fn the_difference_of_two_readings_is_the_calls_in_between() {
        let before = Histogram::parse(&exposition(10, 0, 0.02), FAMILY, CREATE).unwrap();
        let after = Histogram::parse(&exposition(90, 10, 0.3), FAMILY, CREATE).unwrap();
        let delta = after.since(&before);
        assert_eq!(delta.count, 90);
        assert_eq!(delta.buckets[0], (0.005, 80));
        assert!((delta.mean().unwrap() - 0.28 / 90.0).abs() < 1e-12);
    }

    #[test]
    fn an_empty_histogram_adds_nothing_either_way() {
        let calls = Histogram::parse(&exposition(90, 10, 0.3), FAMILY, CREATE).unwrap();
        assert_eq!(Histogram::empty().plus(&calls), calls);
        assert_eq!(calls.plus(&Histogram::empty()), calls);
    }

    #[test]
    fn quantiles_interpolate_inside_a_bucket() {
        let histogram = Histogram::parse(&exposition(90, 10, 0.3), FAMILY, CREATE).unwrap();
        // Rank 50 of 90 in [0, 5 ms]; rank 99 is 9 of 10 in (5 ms, 25 ms].
        assert!((histogram.quantile(0.5).unwrap() - 0.005 * 50.0 / 90.0).abs() < 1e-12);
        assert!((histogram.quantile(0.99).unwrap() - (0.005 + 0.020 * 0.9)).abs() < 1e-12);
    }
}
