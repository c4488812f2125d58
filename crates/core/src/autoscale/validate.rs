//! Validation of an [`AutoscaleSpec`]: every problem at once, each naming the field as the
//! deploy file spells it, so the parser can point at file:line:col. The one validator of
//! autoscale settings: the deploy-file parser, the API and the autoscaler all use it.

use super::*;
use crate::quantity::format_duration;
use crate::service::Resources;

impl AutoscaleSpec {
    /// Every problem as (field, message), the field relative to the autoscale table as the
    /// deploy file spells it (`max`, `steps[1].from`). `resources` are the service's (a cpu or
    /// memory metric is a fraction of them); `routed`: whether it has a public port (the load
    /// balancer measures the request metrics and wakes a service at zero).
    pub fn problems(&self, resources: &Resources, routed: bool) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut err = |field: &str, message: String| out.push((field.to_string(), message));
        if let Some((field, message)) = bounds_problem(self.min, self.max) {
            err(field, message);
        }
        let schedule = matches!(self.policy, ScalePolicy::Schedule { .. });
        if self.min == 0 && !routed && !schedule {
            let message = "min = 0 scales the service to zero after idle_timeout without a \
                request, but only a routed service gets requests to wake it: add `port` to the \
                service, or set min = 1";
            err("min", message.into());
        }
        for (metric, target) in self.targets.iter() {
            let name = metric.name();
            let fraction = matches!(metric, ScaleMetric::Cpu | ScaleMetric::Memory);
            if fraction && !(target > 0.0 && target <= 1.0) {
                let message = format!(
                    "a {name} target is a fraction of the reservation per instance, above 0 \
                     and at most 1 (0.7 = 70 %), got {target}"
                );
                err(name, message);
            } else if !(target.is_finite() && target > 0.0) {
                err(name, format!("a target must be above 0, got {target}"));
            } else if let Some(m) = metric_source_problem(metric, resources, routed) {
                err(name, m);
            }
        }
        self.window_problems(&mut err);
        self.tuning_problems(&mut err);
        match &self.policy {
            ScalePolicy::Target | ScalePolicy::Schedule { .. } if self.targets.is_empty() => {
                let policy = self.policy.name();
                let message = format!(
                    "policy \"{policy}\" tracks a target per instance: set concurrency, rps, \
                     cpu, memory or latency_p95"
                );
                err("policy", message);
            }
            ScalePolicy::Step { metric, .. } | ScalePolicy::Linear { metric, .. } => {
                let policy = self.policy.name();
                for (m, _) in self.targets.iter() {
                    let name = m.name();
                    let message = format!(
                        "targets apply to policies \"target\" and \"schedule\"; policy \
                         \"{policy}\" follows `metric`: remove `{name}`"
                    );
                    err(name, message);
                }
                if let Some(m) = metric_source_problem(*metric, resources, routed) {
                    err("metric", m);
                }
            }
            _ => {}
        }
        match &self.policy {
            ScalePolicy::Step { steps, .. } => step_problems(steps, &mut err),
            ScalePolicy::Linear {
                low, high, step, ..
            } => {
                if !(low.is_finite() && *low >= 0.0) {
                    err("low", format!("must be a number ≥ 0, got {low}"));
                } else if !(high.is_finite() && high > low) {
                    err("high", format!("must be above low ({low}), got {high}"));
                }
                if *step == 0 {
                    err("step", "must add at least 1 instance".into());
                } else if *step > MAX_INSTANCES {
                    err(
                        "step",
                        format!("{step} is more than the limit of {MAX_INSTANCES}"),
                    );
                }
            }
            ScalePolicy::Schedule { windows } => {
                if windows.is_empty() {
                    let message = "policy \"schedule\" needs at least one window: add a \
                        [[services.NAME.autoscale.schedule]] table with days, hours, min and max";
                    err("schedule", message.into());
                }
                for (i, w) in windows.iter().enumerate() {
                    for (field, message) in w.problems() {
                        err(&format!("schedule[{i}].{field}"), message);
                    }
                }
            }
            ScalePolicy::Target => {}
        }
        out
    }

    /// The settings a deploy file does not expose, for specs that arrive as JSON or are built
    /// by hand (tests, `ebb sim`).
    fn tuning_problems(&self, err: &mut impl FnMut(&str, String)) {
        if !(self.panic_threshold.is_finite() && self.panic_threshold > 1.0) {
            let t = self.panic_threshold;
            err("panic_threshold", format!("must be above 1.0, got {t}"));
        }
        if !(0.0..1.0).contains(&self.tolerance) {
            let t = self.tolerance;
            let message = format!("must be at least 0 and below 1, got {t}");
            err("tolerance", message);
        }
        if self.scale_up.instances == 0 && self.scale_up.percent == 0 {
            let message = "instances and percent are both 0: it could never scale up";
            err("scale_up", message.into());
        }
        if self.scale_up.period.is_zero() {
            err("scale_up.period", "must be longer than 0s".into());
        } else if self.scale_up.period > MAX_SCALE_WINDOW {
            let (d, max) = (
                format_duration(self.scale_up.period),
                format_duration(MAX_SCALE_WINDOW),
            );
            err(
                "scale_up.period",
                format!("{d} is more than the limit of {max}"),
            );
        }
    }

    fn window_problems(&self, err: &mut impl FnMut(&str, String)) {
        let limited = [
            ("stable_window", self.stable_window, MAX_SCALE_WINDOW),
            ("panic_window", self.panic_window, MAX_SCALE_WINDOW),
            ("scale_down_delay", self.scale_down_delay, MAX_SCALE_WINDOW),
            ("idle_timeout", self.idle_timeout, MAX_IDLE_TIMEOUT),
        ];
        for (field, d, max) in limited {
            if d.is_zero() && field != "scale_down_delay" {
                err(field, format!("{field} must be longer than 0s"));
            } else if d > max {
                let (d, max) = (format_duration(d), format_duration(max));
                err(
                    field,
                    format!("{field} {d} is more than the limit of {max}"),
                );
            }
        }
        let (panic, stable) = (self.panic_window, self.stable_window);
        if !panic.is_zero() && panic >= stable {
            let (p, s) = (format_duration(panic), format_duration(stable));
            let message = format!(
                "panic_window {p} must be shorter than stable_window {s}: it is the short window \
                 that catches a surge (by default a tenth of it)"
            );
            err("panic_window", message);
        }
    }
}

/// Why `max` or `min` is out of bounds, if one is.
pub(super) fn bounds_problem(min: u32, max: u32) -> Option<(&'static str, String)> {
    if max == 0 {
        Some((
            "max",
            "max must be at least 1: it is the most instances the autoscaler may run".into(),
        ))
    } else if max > MAX_INSTANCES {
        Some((
            "max",
            format!("max {max} is more than the limit of {MAX_INSTANCES}"),
        ))
    } else if min > max {
        Some((
            "min",
            format!("min {min} is above max {max}: set min ≤ max"),
        ))
    } else {
        None
    }
}

/// Why `metric` cannot be measured for this service, if it cannot.
fn metric_source_problem(
    metric: ScaleMetric,
    resources: &Resources,
    routed: bool,
) -> Option<String> {
    let name = metric.name();
    let fix = match metric {
        ScaleMetric::Cpu if resources.cpu_millis.is_none() => {
            "as a fraction of the reserved cpu: set resources.cpu, e.g. cpu = 0.5"
        }
        ScaleMetric::Memory if resources.memory_bytes.is_none() => {
            "as a fraction of the reserved memory: set resources.memory, e.g. memory = \"256MiB\""
        }
        m if m.from_router() && !routed => {
            "by the service's load balancer: add `port` to the service"
        }
        _ => return None,
    };
    Some(format!("{name} is measured {fix}"))
}

fn step_problems(steps: &[StepBand], err: &mut impl FnMut(&str, String)) {
    if steps.is_empty() {
        err(
            "steps",
            "policy \"step\" needs at least one band, e.g. { from = 0.8, change = \"+1\" }".into(),
        );
    }
    for (i, b) in steps.iter().enumerate() {
        let field = |name: &str| format!("steps[{i}].{name}");
        if !b.from.is_finite() {
            err(&field("from"), format!("must be a number, got {}", b.from));
        } else if let Some(to) = b.to.filter(|to| !(to.is_finite() && *to > b.from)) {
            err(
                &field("to"),
                format!("to {to} must be above from {}", b.from),
            );
        }
        if let Some(prev) = i.checked_sub(1).map(|p| steps[p]) {
            match prev.to {
                None => {
                    let message = format!(
                        "band {i} comes after a band without `to`, which already covers every \
                         value from {}: give that band a `to`",
                        prev.from
                    );
                    err(&field("from"), message);
                }
                Some(end) if b.from < end => {
                    let message = format!(
                        "from {} overlaps the band before, which ends at {end}: order the bands \
                         by value, without overlap",
                        b.from
                    );
                    err(&field("from"), message);
                }
                _ => {}
            }
        }
        if let Some(message) = b.change.problem() {
            err(&field("change"), message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concurrency(target: f64) -> ScaleTargets {
        ScaleTargets {
            concurrency: Some(target),
            ..ScaleTargets::default()
        }
    }

    /// Fields of the problems of `a` for a routed service with cpu and memory reserved.
    fn fields(a: &AutoscaleSpec) -> Vec<String> {
        let reserved = Resources {
            cpu_millis: Some(500),
            memory_bytes: Some(1 << 28),
        };
        a.problems(&reserved, true)
            .into_iter()
            .map(|(f, _)| f)
            .collect()
    }

    #[test]
    fn defaults_mirror_the_autoscaler_and_design_md() {
        let a = AutoscaleSpec::new(0, 20, concurrency(10.0));
        assert_eq!(a.stable_window, Duration::from_secs(60));
        assert_eq!(a.panic_window, Duration::from_secs(6));
        assert_eq!(a.scale_down_delay, Duration::from_secs(60));
        assert_eq!(a.idle_timeout, Duration::from_secs(300));
        assert_eq!(fields(&a), Vec::<String>::new());
    }

    #[test]
    fn tuning_the_file_does_not_expose_is_neither_read_nor_written_as_json() {
        let json =
            r#"{"min":1,"max":5,"targets":{"rps":10.0},"tolerance":1.5,"panic_threshold":0.5}"#;
        let a: AutoscaleSpec = serde_json::from_str(json).unwrap();
        assert_eq!(a.tolerance, DEFAULT_TOLERANCE);
        assert_eq!(a.panic_threshold, DEFAULT_PANIC_THRESHOLD);
        assert_eq!(a.scale_up, ScaleUpLimit::default());
        let mut tuned = a.clone();
        tuned.tolerance = 0.2;
        let out = serde_json::to_string(&tuned).unwrap();
        assert!(
            !out.contains("tolerance") && !out.contains("scale_up"),
            "{out}"
        );
    }

    #[test]
    fn every_policy_round_trips_through_json() {
        let window = ScheduleWindow {
            days: Weekdays::WEEKDAYS,
            start: 9 * 60,
            end: 18 * 60,
            utc_offset_minutes: 60,
            min: 3,
            max: 30,
        };
        let policies = [
            ScalePolicy::Target,
            ScalePolicy::Step {
                metric: ScaleMetric::Cpu,
                steps: vec![
                    StepBand {
                        from: 0.0,
                        to: Some(0.3),
                        change: StepChange::Remove(1),
                    },
                    StepBand {
                        from: 0.9,
                        to: None,
                        change: StepChange::Percent(50.0),
                    },
                ],
            },
            ScalePolicy::Linear {
                metric: ScaleMetric::LatencyP95,
                low: 0.05,
                high: 0.2,
                step: 3,
            },
            ScalePolicy::Schedule {
                windows: vec![window],
            },
        ];
        for policy in policies {
            let mut a = AutoscaleSpec::new(1, 20, concurrency(10.0));
            a.targets.latency_p95 = Some(Duration::from_millis(200));
            a.policy = policy;
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(
                serde_json::from_str::<AutoscaleSpec>(&json).unwrap(),
                a,
                "{json}"
            );
        }
    }

    #[test]
    fn json_spells_changes_days_and_durations_as_people_do() {
        let mut a = AutoscaleSpec::new(0, 5, concurrency(10.0));
        a.targets.latency_p95 = Some(Duration::from_millis(250));
        a.policy = ScalePolicy::Step {
            metric: ScaleMetric::LatencyP95,
            steps: vec![StepBand {
                from: 0.5,
                to: None,
                change: StepChange::Percent(-25.0),
            }],
        };
        let json = serde_json::to_string(&a).unwrap();
        for part in [
            r#""latency_p95":250"#,
            r#""kind":"step","metric":"latency_p95""#,
            r#""change":"-25%""#,
            r#""stable_window":60000"#,
        ] {
            assert!(json.contains(part), "{part} in {json}");
        }
        assert!(!json.contains("rps"), "{json}");
        let w = ScheduleWindow {
            days: Weekdays::WEEKEND,
            start: 0,
            end: MINUTES_PER_DAY,
            utc_offset_minutes: 0,
            min: 0,
            max: 2,
        };
        let json = serde_json::to_string(&w).unwrap();
        assert!(json.contains(r#""days":"sat,sun""#), "{json}");
    }

    #[test]
    fn a_minimal_json_spec_takes_the_defaults() {
        let a: AutoscaleSpec = serde_json::from_str(r#"{"max":3}"#).unwrap();
        // JSON that does not say `idle_auto` or `scale_down_auto` keeps the fixed timeout and
        // delay it gives (or the default ones), as before the keys existed.
        let fixed = AutoscaleSpec {
            idle_auto: false,
            scale_down_auto: false,
            ..AutoscaleSpec::new(0, 3, ScaleTargets::default())
        };
        assert_eq!(a, fixed);
        let w: ScheduleWindow = serde_json::from_str(r#"{"max":3}"#).unwrap();
        assert_eq!(
            (w.days, w.start, w.end),
            (Weekdays::ALL, 0, MINUTES_PER_DAY)
        );
        assert!(serde_json::from_str::<StepChange>(r#""+0""#).is_err());
        assert!(serde_json::from_str::<Weekdays>(r#""funday""#).is_err());
    }

    #[test]
    fn bounds_need_a_max_of_at_least_one_and_min_at_most_max() {
        let mut a = AutoscaleSpec::new(0, 0, concurrency(1.0));
        assert_eq!(fields(&a), ["max"]);
        a.max = MAX_INSTANCES + 1;
        assert_eq!(fields(&a), ["max"]);
        a.max = 3;
        a.min = 4;
        assert_eq!(fields(&a), ["min"]);
    }

    #[test]
    fn scale_to_zero_needs_a_port_unless_a_schedule_sets_the_bounds() {
        let mut a = AutoscaleSpec::new(
            0,
            3,
            ScaleTargets {
                cpu: Some(0.7),
                ..ScaleTargets::default()
            },
        );
        let reserved = Resources {
            cpu_millis: Some(100),
            memory_bytes: None,
        };
        let problems = a.problems(&reserved, false);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "min");
        assert!(problems[0].1.contains("add `port`"), "{problems:?}");
        a.policy = ScalePolicy::Schedule {
            windows: vec![ScheduleWindow {
                days: Weekdays::WEEKDAYS,
                start: 0,
                end: MINUTES_PER_DAY,
                utc_offset_minutes: 0,
                min: 2,
                max: 3,
            }],
        };
        assert_eq!(a.problems(&reserved, false), []);
    }

    #[test]
    fn targets_must_be_positive_and_fractions_at_most_one() {
        for (targets, field) in [
            (concurrency(0.0), "concurrency"),
            (concurrency(f64::NAN), "concurrency"),
            (
                ScaleTargets {
                    rps: Some(-1.0),
                    ..ScaleTargets::default()
                },
                "rps",
            ),
            (
                ScaleTargets {
                    cpu: Some(1.5),
                    ..ScaleTargets::default()
                },
                "cpu",
            ),
            (
                ScaleTargets {
                    memory: Some(0.0),
                    ..ScaleTargets::default()
                },
                "memory",
            ),
            (
                ScaleTargets {
                    latency_p95: Some(Duration::ZERO),
                    ..ScaleTargets::default()
                },
                "latency_p95",
            ),
        ] {
            assert_eq!(fields(&AutoscaleSpec::new(1, 3, targets)), [field]);
        }
        let full = ScaleTargets {
            cpu: Some(1.0),
            memory: Some(0.8),
            ..ScaleTargets::default()
        };
        assert_eq!(
            fields(&AutoscaleSpec::new(1, 3, full)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn metrics_need_their_source_reservations_and_the_router() {
        let a = AutoscaleSpec::new(
            1,
            3,
            ScaleTargets {
                cpu: Some(0.5),
                memory: Some(0.5),
                rps: Some(100.0),
                ..ScaleTargets::default()
            },
        );
        let problems = a.problems(&Resources::default(), false);
        let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["rps", "cpu", "memory"], "{problems:?}");
        assert!(problems[1].1.contains("set resources.cpu"), "{problems:?}");
    }

    #[test]
    fn target_tracking_and_schedules_need_a_target() {
        let mut a = AutoscaleSpec::new(1, 3, ScaleTargets::default());
        assert_eq!(fields(&a), ["policy"]);
        a.policy = ScalePolicy::Schedule { windows: vec![] };
        assert_eq!(fields(&a), ["policy", "schedule"]);
    }

    #[test]
    fn the_panic_window_must_be_shorter_than_the_stable_window() {
        let mut a = AutoscaleSpec::new(1, 3, concurrency(1.0));
        a.panic_window = a.stable_window;
        assert_eq!(fields(&a), ["panic_window"]);
        a.panic_window = Duration::ZERO;
        assert_eq!(fields(&a), ["panic_window"]);
        a.panic_window = DEFAULT_PANIC_WINDOW;
        a.stable_window = MAX_SCALE_WINDOW + Duration::from_secs(1);
        a.idle_timeout = Duration::ZERO;
        a.scale_down_delay = Duration::ZERO;
        assert_eq!(fields(&a), ["stable_window", "idle_timeout"]);
    }

    #[test]
    fn step_bands_are_ordered_without_overlap_and_refuse_targets() {
        let band = |from: f64, to: Option<f64>, change| StepBand { from, to, change };
        let mut a = AutoscaleSpec::new(1, 10, ScaleTargets::default());
        a.policy = ScalePolicy::Step {
            metric: ScaleMetric::Cpu,
            steps: vec![
                band(0.0, Some(0.3), StepChange::Remove(1)),
                band(0.8, Some(0.9), StepChange::Add(2)),
                band(0.9, None, StepChange::Percent(50.0)),
            ],
        };
        assert_eq!(fields(&a), Vec::<String>::new());
        a.policy = ScalePolicy::Step {
            metric: ScaleMetric::Cpu,
            steps: vec![
                band(0.5, Some(0.4), StepChange::Add(0)),
                band(0.3, None, StepChange::Add(1)),
                band(0.9, Some(1.0), StepChange::Percent(-150.0)),
            ],
        };
        a.targets = concurrency(1.0);
        assert_eq!(
            fields(&a),
            [
                "concurrency",
                "steps[0].to",
                "steps[0].change",
                "steps[1].from",
                "steps[2].from",
                "steps[2].change"
            ]
        );
    }

    #[test]
    fn linear_needs_low_below_high_and_a_step() {
        let mut a = AutoscaleSpec::new(1, 10, ScaleTargets::default());
        a.policy = ScalePolicy::Linear {
            metric: ScaleMetric::Rps,
            low: 50.0,
            high: 200.0,
            step: 3,
        };
        assert_eq!(fields(&a), Vec::<String>::new());
        a.policy = ScalePolicy::Linear {
            metric: ScaleMetric::Rps,
            low: 50.0,
            high: 50.0,
            step: 0,
        };
        assert_eq!(fields(&a), ["high", "step"]);
    }

    #[test]
    fn schedule_windows_are_checked_one_by_one() {
        let ok = ScheduleWindow {
            days: Weekdays::WEEKDAYS,
            start: 22 * 60,
            end: 6 * 60,
            utc_offset_minutes: -330,
            min: 0,
            max: 2,
        };
        let bad = ScheduleWindow {
            days: Weekdays(0),
            start: 600,
            end: 600,
            utc_offset_minutes: 15 * 60,
            min: 3,
            max: 2,
        };
        let mut a = AutoscaleSpec::new(1, 10, concurrency(5.0));
        a.policy = ScalePolicy::Schedule {
            windows: vec![ok, bad],
        };
        assert_eq!(
            fields(&a),
            [
                "schedule[1].days",
                "schedule[1].hours",
                "schedule[1].utc_offset",
                "schedule[1].min"
            ]
        );
        assert_eq!(ok.to_string(), "mon-fri 22:00-06:00 UTC-05:30");
    }

    #[test]
    fn changes_parse_with_a_sign_and_display_back() {
        for (text, change) in [
            ("+2", StepChange::Add(2)),
            ("-1", StepChange::Remove(1)),
            ("+50%", StepChange::Percent(50.0)),
            ("-12.5%", StepChange::Percent(-12.5)),
        ] {
            assert_eq!(StepChange::parse(text), Ok(change), "{text}");
            assert_eq!(change.to_string(), text);
        }
        for (bad, phrase) in [
            ("2", "needs a sign"),
            ("50%", "needs a sign"),
            ("+0", "does nothing"),
            ("+0%", "above 0"),
            ("-101%", "more than 100 %"),
            ("+x", "invalid change"),
            ("", "invalid change"),
            ("+99999", "limit"),
        ] {
            let e = StepChange::parse(bad).unwrap_err();
            assert!(e.contains(phrase), "{bad:?}: {e}");
        }
    }

    #[test]
    fn days_parse_names_ranges_lists_and_shorthands() {
        for (text, days) in [
            ("mon-fri", Weekdays::WEEKDAYS),
            ("sat,sun", Weekdays::WEEKEND),
            ("Saturday, Sunday", Weekdays::WEEKEND),
            ("daily", Weekdays::ALL),
            ("*", Weekdays::ALL),
            ("fri-mon", Weekdays(0b111_0001)),
            ("mon,wed-thu", Weekdays(0b000_1101)),
            ("thurs", Weekdays(0b000_1000)),
        ] {
            assert_eq!(Weekdays::parse(text), Ok(days), "{text}");
            assert_eq!(Weekdays::parse(&days.to_string()), Ok(days), "{days}");
        }
        assert_eq!(Weekdays::WEEKDAYS.to_string(), "mon-fri");
        assert_eq!(Weekdays(0b000_1101).to_string(), "mon,wed,thu");
        for bad in ["", "mo", "funday", "mon-", "mon;tue"] {
            let e = Weekdays::parse(bad).unwrap_err();
            assert!(e.contains("unknown day"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn hours_parse_with_24_00_as_the_end_of_the_day() {
        assert_eq!(parse_hours("09:00-18:00"), Ok((540, 1080)));
        assert_eq!(parse_hours(" 9:30 - 24:00 "), Ok((570, 1440)));
        assert_eq!(parse_hours("22:00-06:00"), Ok((1320, 360)));
        assert_eq!(format_hours(570, 1440), "09:30-24:00");
        for bad in [
            "9-17",
            "24:00-06:00",
            "09:60-10:00",
            "09:00",
            "09:00-24:01",
            "a:bc-d:ef",
        ] {
            assert!(parse_hours(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn utc_offsets_are_fixed_and_within_real_ones() {
        for (text, minutes) in [
            ("+01:00", 60),
            ("-05:30", -330),
            ("+14:00", 840),
            ("+02", 120),
            ("Z", 0),
        ] {
            assert_eq!(parse_utc_offset(text), Ok(minutes), "{text}");
        }
        assert_eq!(format_utc_offset(-330), "-05:30");
        assert!(parse_utc_offset("+14:30")
            .unwrap_err()
            .contains("-12:00 to +14:00"));
        assert!(parse_utc_offset("Europe/Paris")
            .unwrap_err()
            .contains("time-zone names"));
        assert!(parse_utc_offset("1").is_err());
        assert!(parse_utc_offset("+1:00").is_err());
    }

    #[test]
    fn metric_names_parse_and_list_the_valid_ones() {
        assert_eq!(
            ScaleMetric::parse("latency_p95"),
            Ok(ScaleMetric::LatencyP95)
        );
        let names: Vec<&str> = ScaleMetric::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names, SCALE_METRICS);
        let e = ScaleMetric::parse("qps").unwrap_err();
        assert!(
            e.contains("concurrency, rps, cpu, memory, latency_p95"),
            "{e}"
        );
        let json = serde_json::to_string(&ScaleMetric::LatencyP95).unwrap();
        assert_eq!(json, r#""latency_p95""#);
    }
}
