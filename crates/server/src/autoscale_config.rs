//! From a deploy file's `autoscale` table ([`AutoscaleSpec`], validated by the parser and the
//! API) to the pure policy crate's [`Config`]. Settings the file does not expose (panic
//! threshold, tolerance, scale-up rate) keep the policy crate's defaults.

use ebb_autoscaler::{Band, Change, Config, Metric, Policy, Targets, Window};
use ebb_core::autoscale::{
    AutoscaleSpec, ScaleMetric, ScalePolicy, ScaleTargets, ScheduleWindow, StepBand, StepChange,
};

/// The policy configuration of an autoscaled service.
pub fn config(spec: &AutoscaleSpec) -> Config {
    let mut config = Config::new(spec.min, spec.max, targets(&spec.targets));
    config.policy = policy(&spec.policy);
    config.stable_window = spec.stable_window;
    config.panic_window = spec.panic_window;
    config.scale_down_delay = spec.scale_down_delay;
    config.idle_timeout = spec.idle_timeout;
    config
}

fn targets(t: &ScaleTargets) -> Targets {
    Targets {
        concurrency: t.concurrency,
        rps: t.rps,
        cpu: t.cpu,
        memory: t.memory,
        latency_p95: t.latency_p95,
    }
}

fn metric(m: ScaleMetric) -> Metric {
    match m {
        ScaleMetric::Concurrency => Metric::Concurrency,
        ScaleMetric::Rps => Metric::Rps,
        ScaleMetric::Cpu => Metric::Cpu,
        ScaleMetric::Memory => Metric::Memory,
        ScaleMetric::LatencyP95 => Metric::LatencyP95,
    }
}

fn policy(p: &ScalePolicy) -> Policy {
    match p {
        ScalePolicy::Target => Policy::Target,
        ScalePolicy::Step { metric: m, steps } => Policy::Step {
            metric: metric(*m),
            bands: steps.iter().map(band).collect(),
        },
        ScalePolicy::Linear {
            metric: m,
            low,
            high,
            step,
        } => Policy::Linear {
            metric: metric(*m),
            low: *low,
            high: *high,
            step: *step,
        },
        ScalePolicy::Schedule { windows } => Policy::Schedule {
            windows: windows.iter().map(window).collect(),
            inner: Box::new(Policy::Target),
        },
    }
}

fn band(b: &StepBand) -> Band {
    Band {
        from: b.from,
        to: b.to.unwrap_or(f64::INFINITY),
        change: match b.change {
            StepChange::Add(n) => Change::Add(n),
            StepChange::Remove(n) => Change::Remove(n),
            StepChange::Percent(p) => Change::Percent(p),
        },
    }
}

fn window(w: &ScheduleWindow) -> Window {
    Window {
        days: w.days,
        start: w.start,
        end: w.end,
        utc_offset_minutes: w.utc_offset_minutes,
        min: w.min,
        max: w.max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_parsed_autoscale_table_is_a_valid_policy_config() {
        let files = [
            "min = 0\nmax = 20\nconcurrency = 10\nidle_timeout = \"2m\"\n",
            "min = 1\nmax = 8\npolicy = \"step\"\nmetric = \"rps\"\nsteps = [ { from = 0.0, to = 10.0, change = \"-1\" }, { from = 50.0, change = \"+50%\" } ]\n",
            "min = 1\nmax = 8\npolicy = \"linear\"\nmetric = \"concurrency\"\nlow = 5\nhigh = 20\nstep = 2\n",
            "min = 1\nmax = 8\nrps = 50\npolicy = \"schedule\"\n[[services.web.autoscale.schedule]]\ndays = \"mon-fri\"\nhours = \"09:00-18:00\"\nmin = 3\n",
        ];
        for table in files {
            let text = format!(
                "[services.web]\ncommand = [\"app\"]\nport = 8080\n[services.web.autoscale]\n{table}"
            );
            let specs = ebb_spec::parse_str("web.toml", &text, std::path::Path::new("/"))
                .expect("valid file");
            let spec = specs[0].autoscale.as_ref().expect("autoscaled");
            let config = config(spec);
            assert_eq!(config.validate(), Ok(()), "{table}");
            assert_eq!((config.min, config.max), (spec.min, spec.max));
        }
        let spec = ebb_spec::parse_str(
            "web.toml",
            "[services.web]\ncommand = [\"app\"]\nport = 8080\n[services.web.autoscale]\nmax = 3\nconcurrency = 5\nidle_timeout = \"2m\"\n",
            std::path::Path::new("/"),
        )
        .unwrap();
        let c = config(spec[0].autoscale.as_ref().unwrap());
        assert_eq!(c.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.targets.concurrency, Some(5.0));
    }
}
