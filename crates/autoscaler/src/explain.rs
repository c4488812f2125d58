//! Formatting for reasons: users read them in `ebb events`, so they use the deploy file's units.

use ebb_core::autoscale::ScaleMetric;
use std::time::Duration;

/// A duration as a deploy file would write it: `200ms`, `6s`, `1.5s`, `60s`, `90s`, `5m`,
/// `10m30s`, `1h`. Under two minutes in seconds, as the windows are written.
pub(crate) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if !ms.is_multiple_of(1000) {
        // Tenths are plenty in a reason; clock readings are never whole seconds.
        let tenths = (d.as_secs_f64() * 10.0).round() / 10.0;
        return format!("{tenths}s");
    }
    let s = d.as_secs();
    if s < 120 || (s < 600 && !s.is_multiple_of(60)) {
        return format!("{s}s");
    }
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// Seconds (latency) as a duration.
pub(crate) fn seconds(s: f64) -> String {
    if s.is_finite() && s >= 0.0 {
        duration(Duration::from_secs_f64(s))
    } else {
        format!("{s}s")
    }
}

/// An observed value of `metric`: one decimal for request counts, two for fractions of a
/// reservation, a duration for latency.
pub(crate) fn value(metric: ScaleMetric, v: f64) -> String {
    match metric {
        ScaleMetric::Concurrency | ScaleMetric::Rps => format!("{v:.1}"),
        ScaleMetric::Cpu | ScaleMetric::Memory => format!("{v:.2}"),
        ScaleMetric::LatencyP95 => seconds((v * 1000.0).round() / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_deploy_file() {
        let d = |ms| duration(Duration::from_millis(ms));
        assert_eq!(d(200), "200ms");
        assert_eq!(d(6_000), "6s");
        assert_eq!(d(1_500), "1.5s");
        assert_eq!(d(300_000), "5m");
        assert_eq!(d(60_000), "60s");
        assert_eq!(d(150_000), "150s");
        assert_eq!(d(630_000), "10m30s");
        assert_eq!(d(3_600_000), "1h");
    }

    #[test]
    fn values_use_the_metric_units() {
        assert_eq!(value(ScaleMetric::Concurrency, 43.21), "43.2");
        assert_eq!(value(ScaleMetric::Cpu, 2.1), "2.10");
        assert_eq!(value(ScaleMetric::LatencyP95, 0.2504), "250ms");
    }
}
