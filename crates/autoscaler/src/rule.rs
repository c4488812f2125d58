//! Which rule set a decision's count: a label for events, metrics and simulators, beside the
//! decision's text.

/// The rule that had the last word on a [`Decision`](crate::Decision)'s count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// The policy's proposal, followed: target tracking's proportional count, a step or a
    /// linear policy's count.
    Target,
    /// The load is within `tolerance` of the target: the count is kept.
    Tolerance,
    /// Nothing to decide on (no sample of the metric, no target, no band): the count is kept.
    Hold,
    /// Held up by scale-down stabilization (`scale_down_delay`) or by keeping one instance
    /// until `idle_timeout`.
    Stabilized,
    /// Panic mode: the short window, or a burst, asked for more; no scale-down while it lasts.
    Panic,
    /// Limited by the scale-up rate.
    RateLimited,
    /// No request for `idle_timeout`: scaled to zero.
    Idle,
    /// A request waited at zero instances: scaled from zero at once.
    Demand,
    /// Raised ahead of the load the service's history forecasts (`forecast = "on"`).
    Forecast,
    /// A `min = 0` service started again ahead of the request its idle gaps say is due
    /// (`idle_timeout = "auto"`).
    Prewarm,
    /// Clamped to `min` or `max`.
    Bounds,
    /// Clamped to a schedule window's `min` or `max`.
    Schedule,
}

impl Rule {
    /// Every rule, in label order.
    pub const ALL: [Rule; 12] = [
        Rule::Target,
        Rule::Tolerance,
        Rule::Hold,
        Rule::Stabilized,
        Rule::Panic,
        Rule::RateLimited,
        Rule::Idle,
        Rule::Demand,
        Rule::Forecast,
        Rule::Prewarm,
        Rule::Bounds,
        Rule::Schedule,
    ];

    /// Its name as a label value: snake case, stable.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Target => "target",
            Rule::Tolerance => "tolerance",
            Rule::Hold => "hold",
            Rule::Stabilized => "stabilized",
            Rule::Panic => "panic",
            Rule::RateLimited => "rate_limited",
            Rule::Idle => "idle",
            Rule::Demand => "demand",
            Rule::Forecast => "forecast",
            Rule::Prewarm => "prewarm",
            Rule::Bounds => "bounds",
            Rule::Schedule => "schedule",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
