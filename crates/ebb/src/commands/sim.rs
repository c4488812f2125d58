//! `ebb sim --trace FILE DEPLOY.toml`: replays a request-rate trace against the service's
//! autoscaling (the production autoscaler) and against its peers under one cost/SLO model
//! (`ebb_sim`), and prints their figures side by side.

use super::{parse_deploy_files, Exit, EXIT_INVALID};
use crate::cli::SimArgs;
use crate::output::{out, table};
use ebb_core::autoscale::AutoscaleSpec;
use ebb_core::quantity::format_duration;
use ebb_sim::model::{Model, Outcome};
use ebb_sim::{cheapest, foresight, oracle, Run, Scenario, Which};
use serde_json::{json, Value};
use std::path::Path;

/// Largest trace file read: 22 days of per-second counts take about 10 MB; a file far larger is
/// most likely not a trace.
const MAX_TRACE_BYTES: u64 = 1 << 30;
/// Longest start delay modelled: a day.
const MAX_START_DELAY_S: u64 = 24 * 3600;
/// The chart's window: the busiest hour.
const CHART_SECONDS: usize = 3600;

fn invalid(message: String) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code: EXIT_INVALID,
        message: format!("error: {message}"),
    })
}

pub fn sim(a: &SimArgs) -> anyhow::Result<()> {
    let model = model_of(a)?;
    if let Some(chart) = &a.chart {
        ebb_demo::chart::check_path(chart).map_err(invalid)?;
    }
    let deployment = parse_deploy_files(std::slice::from_ref(&a.file))?;
    let (service, autoscale) = pick(&deployment.services, a.service.as_deref(), &a.file)?;
    let load = read_trace(&a.trace, a.scale)?;
    let scenario = Scenario::new(model, load, autoscale)
        .map_err(|e| invalid(format!("{}: service {service}: {e}", a.file.display())))?;
    let oracle = oracle::oracle(&model, &scenario.load);
    let foresight = foresight::foresight(&model, &scenario.load, ebb_sim::SWEEP_MISSED_PERCENT);
    let (peak, fixed) = oracle::fixed_at_peak(&model, &scenario.load);
    let runs: Vec<Run> = if a.sweep {
        scenario.sweep(&ebb_sim::sweep_grid())
    } else {
        let u = scenario.own_utilization();
        Which::ALL
            .iter()
            .map(|w| scenario.run(*w, u, 0..0).0)
            .collect()
    };
    let chosen: Vec<(Which, Option<&Run>)> = Which::ALL
        .iter()
        .map(|w| {
            let run = if a.sweep {
                cheapest(&runs, *w)
            } else {
                runs.iter().find(|r| r.policy == *w)
            };
            (*w, run)
        })
        .collect();
    let report = Report {
        args: a,
        service: &service,
        scenario: &scenario,
        oracle: &oracle,
        foresight: &foresight,
        peak,
        fixed: &fixed,
        chosen: &chosen,
        runs: &runs,
    };
    if a.json {
        out!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        report.print();
    }
    if let Some(path) = &a.chart {
        let ebb = chosen
            .iter()
            .find(|(w, _)| *w == Which::Ebb)
            .and_then(|c| c.1);
        let u = ebb.map_or_else(|| scenario.own_utilization(), |r| r.utilization);
        write_chart(path, &service, &scenario, u)?;
    }
    Ok(())
}

/// The model from the arguments, checked.
fn model_of(a: &SimArgs) -> anyhow::Result<Model> {
    if !(a.scale.is_finite() && a.scale > 0.0) {
        return Err(invalid(format!(
            "--scale {}: expected a number above 0",
            a.scale
        )));
    }
    if !(a.capacity.is_finite() && a.capacity > 0.0) {
        return Err(invalid(format!(
            "--capacity {}: expected requests per second above 0",
            a.capacity
        )));
    }
    let start_delay_s = a.start_delay.as_secs();
    if start_delay_s > MAX_START_DELAY_S || a.start_delay.subsec_nanos() != 0 {
        return Err(invalid(format!(
            "--start-delay {:?}: expected whole seconds up to a day",
            a.start_delay
        )));
    }
    Ok(Model {
        capacity: a.capacity,
        start_delay_s,
    })
}

/// The service to replay: the one named, or the file's only autoscaled service.
fn pick(
    services: &[ebb_core::ServiceSpec],
    name: Option<&str>,
    file: &Path,
) -> anyhow::Result<(String, AutoscaleSpec)> {
    let autoscaled: Vec<(&str, &AutoscaleSpec)> = services
        .iter()
        .filter_map(|s| Some((s.name.as_str(), s.autoscale.as_ref()?)))
        .collect();
    let names = || {
        autoscaled
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let found = match (name, autoscaled.as_slice()) {
        (Some(want), _) => autoscaled.iter().find(|(n, _)| *n == want).ok_or_else(|| {
            if services.iter().any(|s| s.name == want) {
                format!("service {want} has no [autoscale] to replay")
            } else {
                format!("no service {want}; autoscaled here: {}", names())
            }
        }),
        (None, [one]) => Ok(one),
        (None, []) => Err("no service has an [autoscale] to replay".to_string()),
        (None, _) => Err(format!(
            "several services autoscale ({}); name one with --service",
            names()
        )),
    }
    .map_err(|m| invalid(format!("{}: {m}", file.display())))?;
    Ok((found.0.to_string(), found.1.clone()))
}

fn read_trace(path: &Path, scale: f64) -> anyhow::Result<Vec<f64>> {
    let size = std::fs::metadata(path)
        .map_err(|e| invalid(format!("--trace {}: {e}", path.display())))?
        .len();
    if size > MAX_TRACE_BYTES {
        return Err(invalid(format!(
            "--trace {}: {size} bytes is more than a trace of a year holds",
            path.display()
        )));
    }
    // Read at most the limit: a pipe or a device has no size to check first.
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| {
            std::io::Read::read_to_string(
                &mut std::io::Read::take(f, MAX_TRACE_BYTES + 1),
                &mut text,
            )
        })
        .map_err(|e| invalid(format!("--trace {}: {e}", path.display())))?;
    if text.len() as u64 > MAX_TRACE_BYTES {
        return Err(invalid(format!(
            "--trace {}: more than {MAX_TRACE_BYTES} bytes, more than a trace of a year holds",
            path.display()
        )));
    }
    ebb_sim::trace::parse(&text, scale)
        .map_err(|e| invalid(format!("{}:{}: {}", path.display(), e.line, e.message)))
}

fn ratio(o: &Outcome, oracle: &Outcome) -> f64 {
    o.instance_seconds as f64 / oracle.instance_seconds.max(1) as f64
}

/// One policy's figures as JSON.
fn outcome_json(o: &Outcome, oracle: &Outcome) -> Value {
    json!({
        "instance_seconds": o.instance_seconds,
        "ratio": round(ratio(o, oracle), 3),
        "missed_seconds": o.missed_seconds,
        "missed_percent": round(o.missed_percent(), 3),
        "changes": o.changes,
        "changes_per_hour": round(o.changes_per_hour(), 2),
        "panic_seconds": o.panic_seconds,
        "forecast_seconds": o.forecast_seconds,
        "forecast_error": o.forecast_error.map(|e| round(e, 4)),
    })
}

/// The columns of the table of policies.
const COLUMNS: [&str; 8] = [
    "POLICY",
    "TARGET",
    "INSTANCE-SECONDS",
    "× ORACLE",
    "MISSED S",
    "MISSED %",
    "CHANGES/H",
    "PANIC %",
];

/// What the foresight reference ran: `98th percentile of ±30s`, `the most of ±30m`.
fn foresight_target(told: foresight::Told) -> String {
    let half = format_duration(told.window / 2);
    let percent = round(100.0 * told.quantile, 1);
    match percent {
        p if p >= 100.0 => format!("the most of ±{half}"),
        50.0 => format!("the median of ±{half}"),
        p => format!("{p}th percentile of ±{half}"),
    }
}

fn foresight_json(told: &Option<(foresight::Told, Outcome)>, oracle: &Outcome) -> Value {
    let Some((told, o)) = told else {
        return Value::Null;
    };
    let mut v = outcome_json(o, oracle);
    v["quantile"] = told.quantile.into();
    v["window_s"] = told.window.as_secs().into();
    v["target"] = foresight_target(*told).into();
    v
}

fn run_json(r: &Run, oracle: &Outcome) -> Value {
    let mut v = outcome_json(&r.outcome, oracle);
    // Four decimals: a refined sweep's utilizations are multiples of 1.25 %
    // (`ebb_sim::SWEEP_REFINEMENTS`).
    v["utilization"] = round(r.utilization, 4).into();
    v["target"] = r.target.clone().into();
    v
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// What a replay found, for printing as a table or as JSON.
#[derive(Clone, Copy)]
struct Report<'a> {
    args: &'a SimArgs,
    service: &'a str,
    scenario: &'a Scenario,
    oracle: &'a Outcome,
    /// The foresight reference at its cheapest window and quantile within 1 % missed, if any.
    foresight: &'a Option<(foresight::Told, Outcome)>,
    /// Instances of the fleet fixed at the peak.
    peak: u32,
    fixed: &'a Outcome,
    /// Each policy's run shown: its own target's, or the sweep's cheapest within 1 %.
    chosen: &'a [(Which, Option<&'a Run>)],
    /// Every run (all of a sweep's).
    runs: &'a [Run],
}

impl Report<'_> {
    fn json(self) -> Value {
        let Report {
            args: a,
            service,
            scenario,
            oracle,
            foresight,
            peak,
            fixed,
            chosen,
            runs,
        } = self;
        let (mean, max) = load_figures(&scenario.load);
        let mut doc = json!({
            "service": service,
            "trace": {
                "file": a.trace.display().to_string(),
                "seconds": scenario.load.len(),
                "scale": a.scale,
                "mean_rps": round(mean, 3),
                "peak_rps": round(max, 3),
            },
            "model": {
                "capacity": scenario.model.capacity,
                "start_delay_s": scenario.model.start_delay_s,
            },
            "sweep": a.sweep,
            "oracle": outcome_json(oracle, oracle),
            "foresight": foresight_json(foresight, oracle),
            "fixed": outcome_json(fixed, oracle),
        });
        doc["fixed"]["instances"] = peak.into();
        for (w, run) in chosen {
            doc[w.as_str()] = run.map_or(Value::Null, |r| run_json(r, oracle));
        }
        if a.sweep {
            doc["runs"] = runs
                .iter()
                .map(|r| {
                    let mut v = run_json(r, oracle);
                    v["policy"] = r.policy.as_str().into();
                    v
                })
                .collect();
        }
        doc
    }

    fn print(self) {
        let Report {
            args: a,
            service,
            scenario,
            oracle,
            foresight,
            peak,
            fixed,
            chosen,
            ..
        } = self;
        let (mean, max) = load_figures(&scenario.load);
        let seconds = scenario.load.len();
        out!(
        "{service}: {} ({seconds} s, {:.1} days) ×{}: mean {mean:.1} req/s, peak {max:.0} req/s; \
         an instance serves {} req/s, starts in {} s",
        a.trace.display(),
        seconds as f64 / 86_400.0,
        a.scale,
        scenario.model.capacity,
        scenario.model.start_delay_s
    );
        if a.sweep {
            out!("each policy at its cheapest target with at most 1 % of seconds missed:");
        }
        let row = |name: &str, target: String, o: &Outcome| {
            vec![
                name.to_string(),
                target,
                o.instance_seconds.to_string(),
                format!("{:.2}", ratio(o, oracle)),
                o.missed_seconds.to_string(),
                format!("{:.2}", o.missed_percent()),
                format!("{:.1}", o.changes_per_hour()),
                format!(
                    "{:.0}",
                    100.0 * o.panic_seconds as f64 / o.seconds.max(1) as f64
                ),
            ]
        };
        let none = |name: &str, what: &str| {
            let mut cells = vec![name.to_string(), format!("no {what} within 1 % missed")];
            cells.resize(COLUMNS.len(), "-".into());
            cells
        };
        let mut rows = vec![row("oracle", "knows the future".into(), oracle)];
        rows.push(match foresight {
            Some((told, o)) => row("foresight", foresight_target(*told), o),
            None => none("foresight", "window"),
        });
        for (w, run) in chosen {
            match run {
                Some(r) => rows.push(row(w.as_str(), r.target.clone(), &r.outcome)),
                None => rows.push(none(w.as_str(), "target")),
            }
        }
        rows.push(row("fixed", format!("{peak} instances (the peak)"), fixed));
        table(&COLUMNS, &rows);
        let mut windows: Vec<String> = foresight::FORESIGHT_WINDOWS
            .iter()
            .map(|w| format!("±{}", format_duration(*w / 2)))
            .collect();
        let last = windows.pop().unwrap_or_default();
        out!(
            "foresight: told the needs of every second within {} or {last} of each, at its \
             cheapest percentile within 1 % missed (a reference, not a policy)",
            windows.join(", ")
        );
        if let Some((_, Some(r))) = chosen.iter().find(|(w, _)| *w == Which::Ebb) {
            print_forecast(&r.outcome);
        }
    }
}

/// What ebb's predictive floor did in a run, if it forecast at all.
fn print_forecast(o: &Outcome) {
    if let Some(error) = o.forecast_error {
        out!(
            "ebb's forecast: {:.1} % off (weighted absolute error of the per-minute counts); \
             it raised the count in {:.1} % of the seconds",
            100.0 * error,
            100.0 * o.forecast_seconds as f64 / o.seconds.max(1) as f64
        );
    }
}

fn load_figures(load: &[f64]) -> (f64, f64) {
    let sum: f64 = load.iter().sum();
    let max = load.iter().copied().fold(0.0, f64::max);
    (sum / load.len().max(1) as f64, max)
}

/// The busiest hour (the whole trace if shorter): its first second.
fn busiest_window(load: &[f64]) -> std::ops::Range<usize> {
    if load.len() <= CHART_SECONDS {
        return 0..load.len();
    }
    let mut sum: f64 = load[..CHART_SECONDS].iter().sum();
    let (mut best, mut best_sum) = (0, sum);
    for start in 1..=load.len() - CHART_SECONDS {
        sum += load[start + CHART_SECONDS - 1] - load[start - 1];
        if sum > best_sum {
            (best, best_sum) = (start, sum);
        }
    }
    best..best + CHART_SECONDS
}

fn write_chart(path: &Path, service: &str, scenario: &Scenario, u: f64) -> anyhow::Result<()> {
    let window = busiest_window(&scenario.load);
    let (run, seconds) = scenario.run(Which::Ebb, u, window.clone());
    let points: Vec<ebb_demo::chart::Point> = seconds
        .iter()
        .enumerate()
        .map(|(i, s)| ebb_demo::chart::Point {
            at_s: i as f64,
            ready: s.ready,
            desired: s.desired,
            rps: s.load,
        })
        .collect();
    let title = format!(
        "ebb sim: {service}, {}, the busiest hour (from second {})",
        run.target, window.start
    );
    ebb_demo::chart::write_svg(path, &title, &points).map_err(|e| anyhow::anyhow!(e))?;
    eprintln!("chart written to {}", path.display());
    Ok(())
}
