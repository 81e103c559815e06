//! The CloudWatch statistics a rule may ask for: the five basic ones, percentiles
//! (`p99`, `p99.9`), trimmed/winsorized/trimmed-count/trimmed-sum forms (`tm90`,
//! `TM(10%:90%)`), `IQM`, and percentile rank `PR(:300)`.

use super::Refused;

const BASIC: &[&str] = &["SampleCount", "Average", "Sum", "Minimum", "Maximum", "IQM"];
const PREFIXED: &[&str] = &["p", "tm", "wm", "tc", "ts"];
const RANGED: &[&str] = &["TM", "WM", "TC", "TS", "PR"];

/// Ok when CloudWatch accepts `stat`; else why not.
pub fn check_statistic(stat: &str) -> Result<(), Refused> {
    if BASIC.contains(&stat) {
        return Ok(());
    }
    for prefix in PREFIXED {
        if let Some(number) = stat.strip_prefix(prefix)
            && number.parse::<f64>().is_ok_and(|n| (0.0..=100.0).contains(&n))
            && !number.starts_with(['+', '-'])
        {
            return Ok(());
        }
    }
    for prefix in RANGED {
        if let Some(range) = stat
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('('))
            .and_then(|r| r.strip_suffix(')'))
            && let Some((low, high)) = range.split_once(':')
            && (!low.is_empty() || !high.is_empty())
            && [low, high]
                .iter()
                .all(|bound| bound.is_empty() || bound.trim_end_matches('%').parse::<f64>().is_ok())
        {
            return Ok(());
        }
    }
    Err(Refused(format!(
        "{stat:?} is not a CloudWatch statistic (SampleCount, Average, Sum, Minimum, Maximum, pNN, tmNN, wmNN, tcNN, tsNN, IQM, TM(a%:b%) …)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_cloudwatch_accepts_pass_and_others_are_named() {
        for good in ["Average", "p99", "p99.9", "tm90", "IQM", "TM(10%:90%)", "PR(:300)", "wm99"] {
            assert!(check_statistic(good).is_ok(), "{good}");
        }
        for bad in ["avg", "p101", "p", "TM()", "Mean", "p-1"] {
            assert!(check_statistic(bad).is_err(), "{bad}");
        }
    }
}
