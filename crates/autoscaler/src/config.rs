//! How often the autoscaler decides. What a service asks of it — bounds, targets, policy and
//! timing — is core's `AutoscaleSpec`, read as the deploy file or the API gave it; the
//! defaults and their sources are there (`ebb_core::autoscale`).

use ebb_core::autoscale::ScaleMetric;
use std::time::Duration;

/// How often the server calls [`decide`](crate::decide) for each service. Knative's KPA ticks
/// every 2 s and HPA syncs every 15 s; a 1 s tick lets a load step be answered within a second
/// of its first full sample, and a tick costs microseconds (see `benches/decide.rs`).
pub const TICK: Duration = Duration::from_secs(1);

/// A target as a user would write it (latency in ms).
pub(crate) fn fmt_target(metric: ScaleMetric, target: f64) -> String {
    if metric.is_total() {
        format!("{target}")
    } else {
        crate::explain::seconds(target)
    }
}
