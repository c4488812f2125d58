//! Config validation: every problem at once, each naming the field as a deploy file spells it,
//! so the parser can point at file:line:col.

use crate::config::{fmt_target, Change, Config, Policy, Targets};

impl Config {
    /// Every problem of the config, each naming its field as the deploy file spells it.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut err = |field: &str, message: String| errors.push(ConfigError::new(field, message));
        if self.min > self.max {
            let (min, max) = (self.min, self.max);
            err("min", format!("{min} is above max {max}; set min ≤ max"));
        }
        for (metric, target) in self.targets.iter() {
            if !(target.is_finite() && target > 0.0) {
                let got = fmt_target(metric, target);
                err(
                    metric.name(),
                    format!("a target must be above 0, got {got}"),
                );
            }
        }
        let positive = [
            ("stable_window", self.stable_window),
            ("panic_window", self.panic_window),
            ("idle_timeout", self.idle_timeout),
            ("scale_up.period", self.scale_up.period),
        ];
        for (field, d) in positive {
            if d.is_zero() {
                err(field, "must be longer than 0s".into());
            }
        }
        if self.panic_window > self.stable_window {
            err(
                "panic_window",
                "must not be longer than stable_window".into(),
            );
        }
        if !(self.panic_threshold.is_finite() && self.panic_threshold > 1.0) {
            let t = self.panic_threshold;
            err("panic_threshold", format!("must be above 1.0, got {t}"));
        }
        if !(0.0..1.0).contains(&self.tolerance) {
            let t = self.tolerance;
            err(
                "tolerance",
                format!("must be at least 0 and below 1, got {t}"),
            );
        }
        if self.scale_up.instances == 0 && self.scale_up.percent == 0 {
            err(
                "scale_up",
                "instances and percent are both 0: it could never scale up".into(),
            );
        }
        validate_policy(&self.policy, &self.targets, "", &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn validate_policy(policy: &Policy, targets: &Targets, at: &str, errors: &mut Vec<ConfigError>) {
    let mut err = |field: String, message: String| errors.push(ConfigError::new(&field, message));
    match policy {
        Policy::Target => {
            if targets.iter().next().is_none() {
                let field = format!("{at}policy");
                err(
                    field,
                    "\"target\" needs a target: set concurrency, rps, cpu, memory or latency_p95"
                        .into(),
                );
            }
        }
        Policy::Step { bands, .. } => {
            if bands.is_empty() {
                err(
                    format!("{at}bands"),
                    "a step policy needs at least one band".into(),
                );
            }
            for (i, b) in bands.iter().enumerate() {
                let f = |name: &str| format!("{at}bands[{i}].{name}");
                if b.from.is_nan() || b.to.is_nan() || b.from >= b.to {
                    let (from, to) = (b.from, b.to);
                    err(
                        f("to"),
                        format!("{to} is not above from {from}; a band is [from, to)"),
                    );
                }
                if i > 0 && b.from < bands[i - 1].to {
                    let prev = bands[i - 1].to;
                    err(f("from"), format!("{} overlaps the band before, which ends at {prev}; order bands by value", b.from));
                }
                match b.change {
                    Change::Add(0) | Change::Remove(0) => {
                        err(f("change"), "must change by at least 1 instance".into())
                    }
                    Change::Percent(p) if !(p.is_finite() && p != 0.0 && p >= -100.0) => err(
                        f("change"),
                        format!("a percentage must be non-zero and at least -100, got {p}"),
                    ),
                    _ => {}
                }
            }
        }
        Policy::Linear {
            low, high, step, ..
        } => {
            if !(low.is_finite() && *low >= 0.0) {
                err(
                    format!("{at}low"),
                    format!("must be a number ≥ 0, got {low}"),
                );
            }
            if !(high.is_finite() && high > low) {
                err(
                    format!("{at}high"),
                    format!("must be above low ({low}), got {high}"),
                );
            }
            if *step == 0 {
                err(format!("{at}step"), "must add at least 1 instance".into());
            }
        }
        Policy::Schedule { windows, inner } => {
            if windows.is_empty() {
                err(
                    format!("{at}windows"),
                    "a schedule needs at least one window".into(),
                );
            }
            for (i, w) in windows.iter().enumerate() {
                for (field, message) in w.problems() {
                    err(format!("{at}windows[{i}].{field}"), message);
                }
            }
            if matches!(**inner, Policy::Schedule { .. }) {
                err(
                    format!("{at}inner"),
                    "a schedule cannot contain another schedule".into(),
                );
            } else {
                validate_policy(inner, targets, &format!("{at}inner."), errors);
            }
        }
    }
}

/// A config problem: the field as the deploy file spells it (`bands[1].from`), and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// The field, e.g. `min`, `concurrency`, `windows[0].days`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ConfigError {
    fn new(field: &str, message: String) -> Self {
        ConfigError {
            field: field.to_string(),
            message,
        }
    }
}
