//! The `[services.NAME.autoscale]` table → [`AutoscaleSpec`]. Types and the fields each policy
//! takes are checked here; the rules between values (min ≤ max, bands in order, a cpu target
//! needs reserved cpu, ...) by [`AutoscaleSpec::problems`], through `ServiceSpec::validate`.

use crate::document::{describe_value, entries, header_span, Ctx, Element, Entry};
use crate::values;
use ebb_core::autoscale::{
    parse_hours, parse_utc_offset, AutoscaleSpec, ForecastMode, ScaleMetric, ScalePolicy,
    ScaleTargets, ScheduleWindow, StepBand, StepChange, Weekdays, FORECAST_MODES, MINUTES_PER_DAY,
    SCALE_METRICS, SCALE_POLICIES,
};
use ebb_core::service::MAX_INSTANCES;
use std::ops::Range;
use toml_edit::{TableLike, Value};

const AUTOSCALE_FIELDS: [&str; 19] = [
    "min",
    "max",
    "concurrency",
    "rps",
    "cpu",
    "memory",
    "latency_p95",
    "policy",
    "stable_window",
    "panic_window",
    "scale_down_delay",
    "idle_timeout",
    "forecast",
    "metric",
    "steps",
    "low",
    "high",
    "step",
    "schedule",
];
const BAND_FIELDS: [&str; 3] = ["from", "to", "change"];
const WINDOW_FIELDS: [&str; 5] = ["days", "hours", "utc_offset", "min", "max"];

/// The policies a policy-specific field belongs to; `None` for the fields of every policy.
fn owners(field: &str) -> Option<&'static [&'static str]> {
    match field {
        "concurrency" | "rps" | "cpu" | "memory" | "latency_p95" => Some(&["target", "schedule"]),
        "metric" => Some(&["step", "linear"]),
        "steps" => Some(&["step"]),
        "low" | "high" | "step" => Some(&["linear"]),
        "schedule" => Some(&["schedule"]),
        _ => None,
    }
}

/// `"step"` or `"step" or "linear"`
fn quoted_or(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    quoted.join(" or ")
}

/// Converts the autoscale table of entry `e`; `None` if any error was reported in it.
pub(crate) fn autoscale(
    ctx: &mut Ctx,
    e: &Entry<'_>,
    table: &dyn TableLike,
) -> Option<AutoscaleSpec> {
    let first_error = ctx.errors.len();
    let header = header_span(ctx.text(), e);
    let fields = entries(table, &e.field);
    ctx.check_fields(&fields, &AUTOSCALE_FIELDS);
    let get = |key: &str| fields.iter().find(|f| f.name == key);

    let policy_entry = get("policy");
    let policy = match policy_entry {
        None => Some("target"),
        Some(p) => values::choice(ctx, p, &SCALE_POLICIES, |name| {
            SCALE_POLICIES
                .into_iter()
                .find(|&known| known == name)
                .ok_or_else(|| {
                    format!(
                        "unknown policy {name:?}: use one of {}",
                        SCALE_POLICIES.join(", ")
                    )
                })
        }),
    };
    let mut out = AutoscaleSpec::new(0, 0, ScaleTargets::default());
    let mut metric = None;
    for f in &fields {
        let owned = owners(f.name);
        if let (Some(policy), Some(owners)) = (policy, owned) {
            if !owners.contains(&policy) {
                refuse(ctx, f, policy, owners);
                continue;
            }
        }
        match f.name {
            "min" => out.min = values::count(ctx, f, MAX_INSTANCES).unwrap_or(out.min),
            "max" => out.max = values::count(ctx, f, MAX_INSTANCES).unwrap_or(out.max),
            "concurrency" => out.targets.concurrency = values::number(ctx, f),
            "rps" => out.targets.rps = values::number(ctx, f),
            "cpu" => out.targets.cpu = values::number(ctx, f),
            "memory" => out.targets.memory = values::number(ctx, f),
            "latency_p95" => out.targets.latency_p95 = values::duration(ctx, f),
            "stable_window" => set_duration(ctx, f, &mut out.stable_window),
            "panic_window" => set_duration(ctx, f, &mut out.panic_window),
            "scale_down_delay" => set_duration_or_auto(
                ctx,
                f,
                (&mut out.scale_down_delay, &mut out.scale_down_auto),
                "60s",
            ),
            "idle_timeout" => {
                set_duration_or_auto(ctx, f, (&mut out.idle_timeout, &mut out.idle_auto), "5m")
            }
            "forecast" => {
                out.forecast = values::choice(ctx, f, &FORECAST_MODES, ForecastMode::parse)
                    .unwrap_or(out.forecast)
            }
            "metric" => metric = values::choice(ctx, f, &SCALE_METRICS, ScaleMetric::parse),
            _ => {}
        }
    }
    if get("max").is_none() {
        ctx.error_hint(
            Some(header.clone()),
            &format!("{}.max", e.field),
            "missing required field `max`",
            "add the most instances the autoscaler may run, e.g. max = 10",
        );
    }
    if let Some(name) = policy {
        // Errors about a missing field of the policy point at `policy = "..."`.
        let at = policy_entry.and_then(Entry::value_span).unwrap_or(header);
        let own = Own {
            field: &e.field,
            fields: &fields,
            at,
            policy: name,
        };
        out.policy = own.policy(ctx, metric, &out);
    }
    (ctx.errors.len() == first_error).then_some(out)
}

/// The fields of the autoscale table, to read those of the chosen policy.
struct Own<'t, 'a> {
    /// `services.NAME.autoscale`
    field: &'t str,
    fields: &'t [Entry<'a>],
    /// Where to report a missing field.
    at: Range<usize>,
    policy: &'static str,
}

impl<'a> Own<'_, 'a> {
    /// The policy with its fields; `metric` as read from the table.
    fn policy(
        &self,
        ctx: &mut Ctx,
        metric: Option<ScaleMetric>,
        spec: &AutoscaleSpec,
    ) -> ScalePolicy {
        let metric_example = format!("metric = \"cpu\" (one of {})", SCALE_METRICS.join(", "));
        let stand_in = metric.unwrap_or(ScaleMetric::Concurrency);
        match self.policy {
            "step" => {
                self.needs(ctx, "metric", &metric_example);
                let steps = self.needs(ctx, "steps", "steps = [{ from = 0.8, change = \"+1\" }]");
                ScalePolicy::Step {
                    metric: stand_in,
                    steps: steps
                        .and_then(|s| bands(ctx, s, metric))
                        .unwrap_or_default(),
                }
            }
            "linear" => {
                self.needs(ctx, "metric", &metric_example);
                let low = self.needs(
                    ctx,
                    "low",
                    "low = 50, the value below which nothing changes",
                );
                let high = self.needs(
                    ctx,
                    "high",
                    "high = 200, the value at which `step` instances are added",
                );
                let step = self.needs(ctx, "step", "step = 2, the instances added at `high`");
                let mut value = |e: Option<&Entry<'_>>| e.and_then(|e| threshold(ctx, e, metric));
                let (low, high) = (value(low), value(high));
                ScalePolicy::Linear {
                    metric: stand_in,
                    low: low.unwrap_or(0.0),
                    high: high.unwrap_or(0.0),
                    step: step
                        .and_then(|e| values::count(ctx, e, MAX_INSTANCES))
                        .unwrap_or(0),
                }
            }
            "schedule" => {
                let example = format!(
                    "a [[{}.schedule]] table with days, hours, min and max",
                    self.field
                );
                let windows = self.needs(ctx, "schedule", &example);
                ScalePolicy::Schedule {
                    windows: windows
                        .and_then(|w| schedule(ctx, w, spec))
                        .unwrap_or_default(),
                }
            }
            _ => ScalePolicy::Target,
        }
    }

    /// The field `key`, which the policy needs: an error if it is missing.
    fn needs(&self, ctx: &mut Ctx, key: &str, example: &str) -> Option<&'_ Entry<'a>> {
        let found = self.fields.iter().find(|f| f.name == key);
        if found.is_none() {
            ctx.error_hint(
                Some(self.at.clone()),
                &format!("{}.{key}", self.field),
                format!("policy = \"{}\" needs `{key}`", self.policy),
                format!("add {example}"),
            );
        }
        found
    }
}

fn set_duration(ctx: &mut Ctx, e: &Entry<'_>, into: &mut std::time::Duration) {
    if let Some(d) = values::duration(ctx, e) {
        *into = d;
    }
}

/// `scale_down_delay` and `idle_timeout`: a duration, or `"auto"` for the autoscaler to learn
/// it from the service's load (`auto` is set accordingly).
fn set_duration_or_auto(
    ctx: &mut Ctx,
    e: &Entry<'_>,
    (duration, auto): (&mut std::time::Duration, &mut bool),
    example: &str,
) {
    if let Some(Value::String(s)) = e.value() {
        let text = s.value();
        if text == "auto" {
            *auto = true;
            return;
        }
        if let Err(problem) = ebb_core::parse_duration(text) {
            let hint = format!("write a duration like \"{example}\", or \"auto\" to learn it from the service's load");
            ctx.error_hint(e.value_span(), &e.field, problem.to_string(), hint);
            return;
        }
    }
    *auto = false;
    set_duration(ctx, e, duration);
}

/// Reports a field of another policy than the one chosen.
fn refuse(ctx: &mut Ctx, f: &Entry<'_>, policy: &str, owners: &[&str]) {
    let name = f.name;
    let (message, hint) = if owners.contains(&"target") {
        (
            format!(
                "a `{name}` target does not apply to policy = \"{policy}\", which follows `metric`"
            ),
            format!("remove `{name}`, or scale by targets with policy = \"target\""),
        )
    } else {
        (
            format!("`{name}` does not apply to policy = \"{policy}\""),
            format!(
                "it belongs to policy = {}: set that policy, or remove `{name}`",
                quoted_or(owners)
            ),
        )
    };
    ctx.error_hint(f.key_span.clone(), &f.field, message, hint);
}

/// A value of `metric` (a band's end, `low`, `high`): a duration for latency, stored in seconds,
/// else a number. When the metric is unknown (invalid or missing: that error is the one to fix),
/// either is taken.
fn threshold(ctx: &mut Ctx, e: &Entry<'_>, metric: Option<ScaleMetric>) -> Option<f64> {
    let latency = metric == Some(ScaleMetric::LatencyP95);
    match e.value() {
        Some(Value::String(_)) if latency || metric.is_none() => {
            values::duration(ctx, e).map(|d| d.as_secs_f64())
        }
        Some(v @ (Value::Integer(_) | Value::Float(_))) if latency => {
            // The number as the user wrote it.
            let shown = e
                .value_span()
                .and_then(|span| ctx.text().get(span))
                .unwrap_or("...")
                .trim()
                .to_string();
            ctx.error_hint(
                e.value_span(),
                &e.field,
                format!(
                    "metric = \"latency_p95\" is a duration, found {}",
                    describe_value(v)
                ),
                format!("write \"{shown}ms\" or \"{shown}s\""),
            );
            None
        }
        _ => values::number(ctx, e),
    }
}

/// `steps = [{ from = 0.8, to = 0.9, change = "+2" }, ...]` or `[[...steps]]` tables.
fn bands(ctx: &mut Ctx, e: &Entry<'_>, metric: Option<ScaleMetric>) -> Option<Vec<StepBand>> {
    let header = format!("[[{}]]", e.field);
    let elements = ctx.tables(e, &header)?;
    let mut out = Vec::with_capacity(elements.len());
    for el in &elements {
        let fields = entries(el.table, &el.field);
        ctx.check_fields(&fields, &BAND_FIELDS);
        let get = |key: &str| fields.iter().find(|f| f.name == key);
        let example = "each band needs `from` (inclusive) and `change`, and may have `to` \
            (exclusive), e.g. { from = 0.8, to = 0.9, change = \"+2\" }";
        let required = |ctx: &mut Ctx, key: &str| {
            let found = get(key);
            if found.is_none() {
                missing(ctx, el, key, example);
            }
            found
        };
        let from = required(ctx, "from").and_then(|f| threshold(ctx, f, metric));
        let change = required(ctx, "change").and_then(|f| change(ctx, f));
        let to = get("to").map(|f| threshold(ctx, f, metric));
        if let (Some(from), Some(change)) = (from, change) {
            out.push(StepBand {
                from,
                to: to.flatten(),
                change,
            });
        }
    }
    Some(out)
}

fn missing(ctx: &mut Ctx, el: &Element<'_>, key: &str, hint: &str) {
    ctx.error_hint(
        el.span.clone(),
        &format!("{}.{key}", el.field),
        format!("missing required field `{key}`"),
        hint,
    );
}

/// `change = "+2"`, `"-1"`, `"+50%"`, or a signed integer (`+2`, `-1`).
fn change(ctx: &mut Ctx, e: &Entry<'_>) -> Option<StepChange> {
    let parsed = match e.value() {
        Some(Value::String(s)) => StepChange::parse(s.value()),
        Some(Value::Integer(i)) => {
            let n = *i.value();
            match u32::try_from(n.unsigned_abs()) {
                Ok(0) => Err("change 0 does nothing: change by at least 1".to_string()),
                Ok(m) if m <= MAX_INSTANCES && n > 0 => Ok(StepChange::Add(m)),
                Ok(m) if m <= MAX_INSTANCES => Ok(StepChange::Remove(m)),
                _ => Err(format!(
                    "change {n} is more than the limit of {MAX_INSTANCES} instances"
                )),
            }
        }
        _ => {
            ctx.wrong_type(e, "a change like \"+2\", \"-1\" or \"+50%\"");
            return None;
        }
    };
    parsed
        .map_err(|m| ctx.error(e.value_span(), &e.field, m))
        .ok()
}

/// `[[services.NAME.autoscale.schedule]]` windows; `min` and `max` default to the table's own.
fn schedule(ctx: &mut Ctx, e: &Entry<'_>, spec: &AutoscaleSpec) -> Option<Vec<ScheduleWindow>> {
    let header = format!("[[{}]]", e.field);
    let elements = ctx.tables(e, &header)?;
    let mut out = Vec::with_capacity(elements.len());
    for el in &elements {
        let first_error = ctx.errors.len();
        let fields = entries(el.table, &el.field);
        ctx.check_fields(&fields, &WINDOW_FIELDS);
        let mut w = ScheduleWindow {
            days: Weekdays::ALL,
            start: 0,
            end: MINUTES_PER_DAY,
            utc_offset_minutes: 0,
            min: spec.min,
            max: spec.max,
        };
        for f in &fields {
            match f.name {
                "days" => {
                    if let Some(days) = parsed(ctx, f, Weekdays::parse) {
                        w.days = days;
                    }
                }
                "hours" => {
                    if let Some((start, end)) = parsed(ctx, f, parse_hours) {
                        (w.start, w.end) = (start, end);
                    }
                }
                "utc_offset" => {
                    if let Some(Value::Integer(i)) = f.value() {
                        ctx.error_hint(
                            f.value_span(),
                            &f.field,
                            "expected an offset like \"+01:00\", found an integer",
                            format!("write utc_offset = \"{:+03}:00\"", i.value()),
                        );
                    } else if let Some(minutes) = parsed(ctx, f, parse_utc_offset) {
                        w.utc_offset_minutes = minutes;
                    }
                }
                "min" => w.min = values::count(ctx, f, MAX_INSTANCES).unwrap_or(w.min),
                "max" => w.max = values::count(ctx, f, MAX_INSTANCES).unwrap_or(w.max),
                _ => {}
            }
        }
        let has = |key: &str| fields.iter().any(|f| f.name == key);
        if !has("min") && !has("max") {
            ctx.error_hint(
                el.span.clone(),
                &el.field,
                "a window that sets neither `min` nor `max` changes nothing",
                "add the bounds for the time it covers, e.g. min = 3 and max = 30",
            );
        }
        if !has("days") && !has("hours") {
            ctx.error_hint(
                el.span.clone(),
                &el.field,
                "a window without `days` or `hours` is always open",
                "add days = \"mon-fri\" and/or hours = \"09:00-18:00\"; for fixed bounds, set \
                 min and max of the autoscale table instead",
            );
        }
        if ctx.errors.len() == first_error {
            out.push(w);
        }
    }
    Some(out)
}

/// A string value read by `parse`, which says what is wrong with it.
fn parsed<T>(
    ctx: &mut Ctx,
    e: &Entry<'_>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    let text = values::string(ctx, e)?;
    parse(&text)
        .map_err(|m| ctx.error(e.value_span(), &e.field, m))
        .ok()
}
