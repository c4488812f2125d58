//! One `[jobs.NAME]` table → [`JobSpec`], one `[queues.NAME]` table → [`QueueSpec`], with
//! ebb-core's defaults filled in and every problem reported at its place in the file.

use crate::document::{entries, Ctx, Entry};
use crate::service::{constraints, env, report_core_problems, resources, stop, workdir};
use crate::values;
use ebb_core::job::{MAX_PRIORITY, MAX_QUEUE_WEIGHT, MAX_RETRIES, MAX_TASKS};
use ebb_core::schedule::{Overlap, OVERLAPS};
use ebb_core::service::{FieldError, PLACEMENTS};
use ebb_core::{JobSpec, Parallelism, Placement, QueueSpec};
use std::ops::Range;
use std::path::Path;
use toml_edit::{TableLike, Value};

const JOB_FIELDS: [&str; 18] = [
    "command",
    "tasks",
    "parallelism",
    "queue",
    "priority",
    "retries",
    "fail_on_exit_codes",
    "timeout",
    "deadline",
    "min_runtime",
    "env",
    "workdir",
    "resources",
    "stop",
    "constraints",
    "placement",
    "schedule",
    "overlap",
];
const PARALLELISM_FIELDS: [&str; 2] = ["min", "max"];
const QUEUE_FIELDS: [&str; 2] = ["weight", "max_running"];

/// Converts one job; `None` if any error was reported for it (all of them are in `ctx`).
pub(crate) fn convert(
    ctx: &mut Ctx,
    name: &str,
    table: &dyn TableLike,
    header: Range<usize>,
    base_dir: &Path,
) -> Option<JobSpec> {
    let first_error = ctx.errors.len();
    let base = format!("jobs.{name}");
    let fields = entries(table, &base);
    ctx.check_fields(&fields, &JOB_FIELDS);
    let get = |key: &str| fields.iter().find(|e| e.name == key);
    let mut job = JobSpec::new(name, Vec::new(), 1);
    match get("command") {
        Some(e) => job.command = values::argv(ctx, e).unwrap_or_default(),
        None => ctx.error_hint(
            Some(header.clone()),
            &format!("{base}.command"),
            "missing required field `command`",
            "add the program and its arguments, e.g. command = [\"python3\", \"task.py\", \"${EBB_TASK_INDEX}\"]",
        ),
    }
    if let Some(e) = get("tasks") {
        job.tasks = values::count(ctx, e, MAX_TASKS).unwrap_or(1);
    }
    job.parallelism = Parallelism {
        min: 1,
        max: job.tasks,
    };
    if let Some(e) = get("parallelism") {
        if let Some(p) = parallelism(ctx, e) {
            job.parallelism = p;
        }
    }
    if let Some(e) = get("queue") {
        job.queue = values::string(ctx, e).unwrap_or(job.queue);
    }
    if let Some(e) = get("priority") {
        let p = values::count(ctx, e, u32::from(MAX_PRIORITY)).unwrap_or(0);
        job.priority = u8::try_from(p).unwrap_or(MAX_PRIORITY);
    }
    if let Some(e) = get("retries") {
        job.retries = values::count(ctx, e, MAX_RETRIES).unwrap_or(job.retries);
    }
    if let Some(e) = get("fail_on_exit_codes") {
        job.fail_on_exit_codes = exit_codes(ctx, e);
    }
    for (key, slot) in [
        ("timeout", &mut job.timeout),
        ("deadline", &mut job.deadline),
    ] {
        if let Some(e) = get(key) {
            *slot = values::duration(ctx, e);
        }
    }
    if let Some(e) = get("min_runtime") {
        job.min_runtime = values::duration(ctx, e).unwrap_or(job.min_runtime);
    }
    if let Some(e) = get("env") {
        job.env = env(ctx, e);
    }
    job.workdir = workdir(ctx, get("workdir"), base_dir, &header, &base);
    if let Some(t) = get("resources").and_then(|e| ctx.table(e)) {
        job.resources = resources(ctx, t, &format!("{base}.resources"));
    }
    if let Some(t) = get("stop").and_then(|e| ctx.table(e)) {
        job.stop = stop(ctx, t, &format!("{base}.stop"));
    }
    if let Some(e) = get("constraints") {
        job.constraints = constraints(ctx, e);
    }
    if let Some(e) = get("placement") {
        job.placement = values::choice(ctx, e, &PLACEMENTS, Placement::parse).unwrap_or_default();
    }
    if let Some(e) = get("schedule") {
        job.schedule = values::string(ctx, e);
    }
    if let Some(e) = get("overlap") {
        job.overlap = values::choice(ctx, e, &OVERLAPS, Overlap::parse).unwrap_or_default();
    }
    core_checks(ctx, table, &header, &base, first_error, job.validate());
    (ctx.errors.len() == first_error).then_some(job)
}

/// Converts one queue; `None` if any error was reported for it.
pub(crate) fn queue(
    ctx: &mut Ctx,
    name: &str,
    table: &dyn TableLike,
    header: Range<usize>,
) -> Option<QueueSpec> {
    let first_error = ctx.errors.len();
    let base = format!("queues.{name}");
    let fields = entries(table, &base);
    ctx.check_fields(&fields, &QUEUE_FIELDS);
    let mut queue = QueueSpec::new(name);
    for e in &fields {
        match e.name {
            "weight" => queue.weight = values::count(ctx, e, MAX_QUEUE_WEIGHT).unwrap_or(1),
            "max_running" => queue.max_running = values::count(ctx, e, u32::MAX),
            _ => {}
        }
    }
    core_checks(ctx, table, &header, &base, first_error, queue.validate());
    (ctx.errors.len() == first_error).then_some(queue)
}

/// ebb-core's own checks, minus those about fields already reported.
fn core_checks(
    ctx: &mut Ctx,
    table: &dyn TableLike,
    header: &Range<usize>,
    base: &str,
    first_error: usize,
    problems: Vec<FieldError>,
) {
    let reported: Vec<String> = ctx.errors[first_error..]
        .iter()
        .filter_map(|e| e.field.clone())
        .collect();
    report_core_problems(ctx, table, header, base, &reported, problems);
}

/// `parallelism = 8` or `parallelism = { min = 2, max = 32 }`.
fn parallelism(ctx: &mut Ctx, e: &Entry<'_>) -> Option<Parallelism> {
    if let Some(Value::Integer(_)) = e.value() {
        let n = values::count(ctx, e, MAX_TASKS)?;
        if n == 0 {
            ctx.error(
                e.value_span(),
                &e.field,
                "parallelism 0 would never run a task: give at least 1",
            );
            return None;
        }
        return Some(Parallelism::fixed(n));
    }
    let Some(table) = e.item.as_table_like() else {
        ctx.error_hint(
            e.value_span(),
            &e.field,
            "expected a whole number or { min = ..., max = ... }",
            "parallelism = 8 runs 8 at once; parallelism = { min = 2, max = 32 } grows from 2 to 32 on free capacity",
        );
        return None;
    };
    let fields = entries(table, &e.field);
    ctx.check_fields(&fields, &PARALLELISM_FIELDS);
    let mut min = None;
    let mut max = None;
    for f in &fields {
        match f.name {
            "min" => min = values::count(ctx, f, MAX_TASKS),
            "max" => max = values::count(ctx, f, MAX_TASKS),
            _ => {}
        }
    }
    match (min, max) {
        (Some(min), Some(max)) if min >= 1 && min <= max => Some(Parallelism { min, max }),
        (Some(min), Some(max)) => {
            ctx.error(
                e.value_span().or_else(|| e.key_span.clone()),
                &e.field,
                format!("min {min} and max {max}: give 1 ≤ min ≤ max"),
            );
            None
        }
        _ => {
            if !fields.iter().any(|f| f.name == "max") || !fields.iter().any(|f| f.name == "min") {
                ctx.error_hint(
                    e.value_span().or_else(|| e.key_span.clone()),
                    &e.field,
                    "parallelism needs both min and max",
                    "e.g. parallelism = { min = 2, max = 32 }",
                );
            }
            None
        }
    }
}

/// `fail_on_exit_codes = [42, 3]`: exit codes 1–255.
fn exit_codes(ctx: &mut Ctx, e: &Entry<'_>) -> Vec<i32> {
    let Some(Value::Array(array)) = e.value() else {
        ctx.wrong_type(e, "an array of exit codes, e.g. [42]");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, v) in array.iter().enumerate() {
        let field = format!("{}[{i}]", e.field);
        let span = v.span().or_else(|| e.value_span());
        match v.as_integer() {
            Some(code) if (1..=255).contains(&code) => out.push(code as i32),
            Some(code) => ctx.error(
                span,
                &field,
                format!("exit code {code} is not one a process can fail with: give 1 to 255"),
            ),
            None => ctx.error(
                span,
                &field,
                "expected a whole number (an exit code, 1 to 255)",
            ),
        }
    }
    out
}
