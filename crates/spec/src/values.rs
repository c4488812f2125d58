//! Readers for the typed values of a deploy file. Each reports its own error (at the value, with
//! what was expected and what was found) and returns `None`, so the caller can carry on and find
//! the next problem.

use crate::diagnostic::suggest;
use crate::document::{describe_value, Ctx, Entry};
use ebb_core::quantity::{cpu_millis_from_f64, QuantityError};
use ebb_core::{parse_cpu_millis, parse_duration, parse_size};
use std::time::Duration;
use toml_edit::Value;

pub(crate) fn string(ctx: &mut Ctx, e: &Entry<'_>) -> Option<String> {
    match e.value() {
        Some(Value::String(s)) => Some(s.value().clone()),
        _ => {
            ctx.wrong_type(e, "a string");
            None
        }
    }
}

pub(crate) fn boolean(ctx: &mut Ctx, e: &Entry<'_>) -> Option<bool> {
    match e.value() {
        Some(Value::Boolean(b)) => Some(*b.value()),
        _ => {
            ctx.wrong_type(e, "`true` or `false`");
            None
        }
    }
}

/// An argv: a non-empty array of strings.
pub(crate) fn argv(ctx: &mut Ctx, e: &Entry<'_>) -> Option<Vec<String>> {
    let example = "e.g. [\"python3\", \"app.py\"]";
    let array = match e.value() {
        Some(Value::Array(a)) => a,
        Some(Value::String(s)) => {
            let words: Vec<String> = s
                .value()
                .split_whitespace()
                .map(|w| format!("{w:?}"))
                .collect();
            ctx.error_hint(
                e.value_span(),
                &e.field,
                "expected an array of arguments, found a string",
                format!("write each argument separately: [{}]", words.join(", ")),
            );
            return None;
        }
        _ => {
            ctx.wrong_type(e, "an array of arguments");
            return None;
        }
    };
    if array.is_empty() {
        ctx.error_hint(
            e.value_span(),
            &e.field,
            "command is empty",
            format!("give the program and its arguments, {example}"),
        );
        return None;
    }
    let mut out = Vec::with_capacity(array.len());
    let mut ok = true;
    for (i, v) in array.iter().enumerate() {
        match v.as_str() {
            Some(s) => out.push(s.to_string()),
            None => {
                ok = false;
                ctx.error(
                    v.span().or_else(|| e.value_span()),
                    &format!("{}[{i}]", e.field),
                    format!("expected a string argument, found {}", describe_value(v)),
                );
            }
        }
    }
    ok.then_some(out)
}

/// A count such as `instances`: a whole number from 0 to `max`.
pub(crate) fn count(ctx: &mut Ctx, e: &Entry<'_>, max: u32) -> Option<u32> {
    let n = whole_number(ctx, e)?;
    if n < 0 {
        ctx.error(
            e.value_span(),
            &e.field,
            format!("must not be negative, found {n}"),
        );
        None
    } else if n > i64::from(max) {
        ctx.error(
            e.value_span(),
            &e.field,
            format!("{n} is more than the limit of {max}"),
        );
        None
    } else {
        u32::try_from(n).ok()
    }
}

/// A TCP port: a whole number from 1 to 65535.
pub(crate) fn port(ctx: &mut Ctx, e: &Entry<'_>) -> Option<u16> {
    let n = whole_number(ctx, e)?;
    match u16::try_from(n) {
        Ok(port) if port > 0 => Some(port),
        _ => {
            ctx.error_hint(
                e.value_span(),
                &e.field,
                format!("port {n} is out of range"),
                "give a port from 1 to 65535",
            );
            None
        }
    }
}

/// A finite number, written as an integer or a float.
pub(crate) fn number(ctx: &mut Ctx, e: &Entry<'_>) -> Option<f64> {
    match e.value() {
        Some(Value::Integer(i)) => Some(*i.value() as f64),
        Some(Value::Float(f)) if f.value().is_finite() => Some(*f.value()),
        Some(Value::Float(f)) => {
            ctx.error(
                e.value_span(),
                &e.field,
                format!("must be a finite number, found {}", f.value()),
            );
            None
        }
        Some(Value::String(s)) => {
            let text = s.value().trim();
            let percent = text
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<f64>().ok());
            let hint = match (percent, text.parse::<f64>()) {
                (Some(p), _) => format!("write a fraction: {} = {}", e.name, p / 100.0),
                (None, Ok(_)) => format!("remove the quotes: {} = {text}", e.name),
                (None, Err(_)) => {
                    ctx.wrong_type(e, "a number");
                    return None;
                }
            };
            ctx.error_hint(
                e.value_span(),
                &e.field,
                "expected a number, found a string",
                hint,
            );
            None
        }
        _ => {
            ctx.wrong_type(e, "a number");
            None
        }
    }
}

/// Any whole number; a float, a quoted number or another type is reported.
fn whole_number(ctx: &mut Ctx, e: &Entry<'_>) -> Option<i64> {
    match e.value() {
        Some(Value::Integer(i)) => Some(*i.value()),
        Some(Value::Float(f)) => {
            ctx.error(
                e.value_span(),
                &e.field,
                format!("must be a whole number, found {}", f.value()),
            );
            None
        }
        Some(Value::String(s)) if s.value().trim().parse::<i64>().is_ok() => {
            ctx.error_hint(
                e.value_span(),
                &e.field,
                "expected a whole number, found a string",
                format!("remove the quotes: {} = {}", e.name, s.value().trim()),
            );
            None
        }
        _ => {
            ctx.wrong_type(e, "a whole number");
            None
        }
    }
}

/// One of a fixed set of names, such as `protocol = "tcp"`: `parse` turns the string into the
/// value or says what is wrong (listing the valid names); a near miss also gets a suggestion.
pub(crate) fn choice<T>(
    ctx: &mut Ctx,
    e: &Entry<'_>,
    names: &[&str],
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    let Some(Value::String(s)) = e.value() else {
        let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
        let expected = match quoted.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => quoted.join(""),
        };
        ctx.wrong_type(e, &expected);
        return None;
    };
    match parse(s.value()) {
        Ok(v) => Some(v),
        Err(message) => {
            match suggest(s.value(), names) {
                Some(name) => ctx.error_hint(
                    e.value_span(),
                    &e.field,
                    message,
                    format!("did you mean `{name}`?"),
                ),
                None => ctx.error(e.value_span(), &e.field, message),
            }
            None
        }
    }
}

/// A duration string such as `"500ms"` or `"1m30s"`.
pub(crate) fn duration(ctx: &mut Ctx, e: &Entry<'_>) -> Option<Duration> {
    match e.value() {
        Some(Value::String(s)) => quantity(ctx, e, parse_duration(s.value())),
        Some(Value::Integer(i)) => {
            let n = i.value();
            ctx.error_hint(
                e.value_span(),
                &e.field,
                "expected a duration with a unit, found a bare number",
                format!("write \"{n}s\" or \"{n}ms\""),
            );
            None
        }
        _ => {
            ctx.wrong_type(e, "a duration like \"10s\"");
            None
        }
    }
}

/// A byte size: a string such as `"64MiB"` or an integer number of bytes.
pub(crate) fn size(ctx: &mut Ctx, e: &Entry<'_>) -> Option<u64> {
    let bytes = match e.value() {
        Some(Value::String(s)) => quantity(ctx, e, parse_size(s.value()))?,
        Some(Value::Integer(i)) => {
            let n = *i.value();
            let parsed = u64::try_from(n).map_err(|_| QuantityError::Size(n.to_string()));
            quantity(ctx, e, parsed)?
        }
        _ => {
            ctx.wrong_type(e, "a size like \"64MiB\" or a whole number of bytes");
            return None;
        }
    };
    if bytes == 0 {
        ctx.error(e.value_span(), &e.field, "must be greater than zero");
        return None;
    }
    Some(bytes)
}

/// CPU in cores (`0.25`, `2`) or millicores (`"250m"`), as millicores.
pub(crate) fn cpu(ctx: &mut Ctx, e: &Entry<'_>) -> Option<u32> {
    let from_cores = |cores: f64, text: String| {
        cpu_millis_from_f64(cores * 1000.0).ok_or(QuantityError::Cpu(text))
    };
    let parsed = match e.value() {
        Some(Value::String(s)) => parse_cpu_millis(s.value()),
        Some(Value::Integer(i)) => from_cores(*i.value() as f64, i.value().to_string()),
        Some(Value::Float(f)) => from_cores(*f.value(), f.value().to_string()),
        _ => {
            ctx.wrong_type(e, "cores (0.25) or millicores (\"250m\")");
            return None;
        }
    };
    quantity(ctx, e, parsed)
}

fn quantity<T>(ctx: &mut Ctx, e: &Entry<'_>, parsed: Result<T, QuantityError>) -> Option<T> {
    parsed
        .map_err(|q| ctx.error(e.value_span(), &e.field, q.to_string()))
        .ok()
}
