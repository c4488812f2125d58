//! One `[services.NAME]` table → [`ServiceSpec`], with defaults from ebb-core filled in.

use crate::autoscale::autoscale;
use crate::document::{describe, describe_value, element, entries, header_span, Ctx, Entry};
use crate::values;
use ebb_core::service::{
    parse_header_name, FieldError, BALANCE_ALGORITHMS, MAX_HEALTH_THRESHOLD, MAX_INSTANCES,
    MAX_RETRIES, PLACEMENTS,
};
use ebb_core::Constraint;
use ebb_core::{
    BalanceAlgorithm, BalanceSpec, CertificateFiles, HealthCheck, HealthSpec, Placement, Protocol,
    Resources, ServiceSpec, StopSpec, TlsSpec,
};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use toml_edit::{TableLike, Value};

const SERVICE_FIELDS: [&str; 15] = [
    "command",
    "instances",
    "env",
    "workdir",
    "resources",
    "health",
    "stop",
    "port",
    "protocol",
    "balance",
    "autoscale",
    "constraints",
    "placement",
    "tls",
    "priority",
];
const TLS_FIELDS: [&str; 3] = ["cert", "key", "sni"];
const CERTIFICATE_FIELDS: [&str; 2] = ["cert", "key"];
const RESOURCE_FIELDS: [&str; 2] = ["cpu", "memory"];
const HEALTH_FIELDS: [&str; 8] = [
    "http",
    "tcp",
    "command",
    "interval",
    "timeout",
    "unhealthy_threshold",
    "healthy_threshold",
    "start_period",
];
const HEALTH_KINDS: [&str; 3] = ["http", "tcp", "command"];
const STOP_FIELDS: [&str; 2] = ["signal", "grace"];
const BALANCE_FIELDS: [&str; 7] = [
    "algorithm",
    "retries",
    "slow_start",
    "drain",
    "request_timeout",
    "queue_timeout",
    "hash_header",
];
const PROTOCOLS: [&str; 2] = ["http", "tcp"];

/// Converts one service; `None` if any error was reported for it (all of them are in `ctx`).
pub(crate) fn convert(
    ctx: &mut Ctx,
    name: &str,
    table: &dyn TableLike,
    header: Range<usize>,
    base_dir: &Path,
) -> Option<ServiceSpec> {
    let first_error = ctx.errors.len();
    let base = format!("services.{name}");
    let fields = entries(table, &base);
    ctx.check_fields(&fields, &SERVICE_FIELDS);
    let get = |key: &str| fields.iter().find(|e| e.name == key);

    let mut spec = ServiceSpec::new(name, Vec::new());
    match get("command") {
        Some(e) => spec.command = values::argv(ctx, e).unwrap_or_default(),
        None => ctx.error_hint(
            Some(header.clone()),
            &format!("{base}.command"),
            "missing required field `command`",
            "add the program and its arguments, e.g. command = [\"python3\", \"app.py\"]",
        ),
    }
    if let Some(e) = get("instances") {
        spec.instances = values::count(ctx, e, MAX_INSTANCES).unwrap_or(1);
    }
    if let Some(e) = get("env") {
        spec.env = env(ctx, e);
    }
    spec.workdir = workdir(ctx, get("workdir"), base_dir, &header, &base);
    if let Some(t) = get("resources").and_then(|e| ctx.table(e)) {
        spec.resources = resources(ctx, t, &format!("{base}.resources"));
    }
    if let Some(t) = get("health").and_then(|e| ctx.table(e)) {
        spec.health = health(ctx, t, &format!("{base}.health"));
    }
    if let Some(t) = get("stop").and_then(|e| ctx.table(e)) {
        spec.stop = stop(ctx, t, &format!("{base}.stop"));
    }
    if let Some(e) = get("port") {
        spec.port = values::port(ctx, e);
    }
    // Whether `spec.protocol` is what the file says (not a default standing in for a bad value).
    let mut protocol_known = true;
    if let Some(e) = get("protocol") {
        let parsed = values::choice(ctx, e, &PROTOCOLS, protocol);
        protocol_known = parsed.is_some();
        spec.protocol = parsed.unwrap_or_default();
    }
    if let Some(e) = get("balance") {
        if let Some(t) = ctx.table(e) {
            spec.balance = balance(ctx, t, &e.field, protocol_known.then_some(spec.protocol));
            if get("port").is_none() {
                ctx.error_hint(
                    Some(header_span(ctx.text(), e)),
                    &e.field,
                    "balance settings need a public port",
                    format!("add `port = ...` to [{base}], the port its load balancer listens on"),
                );
            }
        }
    }
    if let Some(e) = get("autoscale") {
        if let Some(t) = ctx.table(e) {
            spec.autoscale = autoscale(ctx, e, t);
        }
    }
    if let Some(e) = get("constraints") {
        spec.constraints = constraints(ctx, e);
    }
    if let Some(e) = get("placement") {
        spec.placement = values::choice(ctx, e, &PLACEMENTS, Placement::parse).unwrap_or_default();
    }
    if let Some(e) = get("tls") {
        if let Some(t) = ctx.table(e) {
            spec.tls = tls(ctx, t, e, base_dir);
        }
    }
    if let Some(e) = get("priority") {
        let max = ebb_core::job::MAX_PRIORITY;
        let p = values::count(ctx, e, u32::from(max));
        spec.priority = p.and_then(|p| u8::try_from(p).ok());
    }

    // ebb-core's own checks, minus those about fields we already reported.
    let reported: Vec<String> = ctx.errors[first_error..]
        .iter()
        .filter_map(|e| e.field.clone())
        .collect();
    if let Some(a) = &spec.autoscale {
        // Without `instances`, an autoscaled service starts at `min`.
        if get("instances").is_none() {
            spec.instances = a.min;
        }
        // Autoscaling is checked against the service's resources and port: not against the
        // defaults standing in for bad ones.
        let depends = [format!("{base}.resources"), format!("{base}.port")];
        if reported
            .iter()
            .any(|r| depends.iter().any(|d| r.starts_with(d.as_str())))
        {
            spec.autoscale = None;
        }
    }
    report_core_problems(ctx, table, &header, &base, &reported, spec.validate());
    (ctx.errors.len() == first_error).then_some(spec)
}

/// ebb-core's own checks of a converted table (`base` names it: `services.web`), each at its
/// place in the file, minus those about fields already `reported` by the parser.
pub(crate) fn report_core_problems(
    ctx: &mut Ctx,
    table: &dyn TableLike,
    header: &Range<usize>,
    base: &str,
    reported: &[String],
    problems: Vec<FieldError>,
) {
    for FieldError { field, message } in problems {
        // The same field, a field inside one already reported, or an element of it (`command[1]`).
        let already = reported.iter().any(|r| {
            field == *r
                || field.starts_with(&format!("{r}."))
                || r.starts_with(&format!("{field}["))
        });
        if !already {
            let rest = field.strip_prefix(base).unwrap_or("");
            let span = locate(ctx.text(), table, rest, header);
            ctx.error(Some(span), &field, message);
        }
    }
}

pub(crate) fn env(ctx: &mut Ctx, e: &Entry<'_>) -> BTreeMap<String, String> {
    let Some(table) = ctx.table(e) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for var in entries(table, &e.field) {
        match var.value() {
            Some(Value::String(s)) => {
                out.insert(var.name.to_string(), s.value().clone());
            }
            Some(v @ (Value::Integer(_) | Value::Float(_) | Value::Boolean(_))) => {
                // The value as the user wrote it, to show it quoted.
                let shown = var
                    .value_span()
                    .and_then(|span| ctx.text().get(span))
                    .unwrap_or("...")
                    .trim()
                    .to_string();
                ctx.error_hint(
                    var.value_span(),
                    &var.field,
                    format!("expected a string, found {}", describe_value(v)),
                    format!(
                        "environment values are strings: write {} = \"{}\"",
                        var.name, shown
                    ),
                );
            }
            _ => ctx.wrong_type(&var, "a string"),
        }
    }
    out
}

/// `constraints = ["zone=a", "disk!=hdd"]`: node-label conditions, each checked by the
/// scheduler's own parser and stored in its canonical form (`disk != hdd` → `disk!=hdd`), so
/// spacing does not change the service's version.
pub(crate) fn constraints(ctx: &mut Ctx, e: &Entry<'_>) -> Vec<String> {
    let example = "e.g. constraints = [\"zone=a\", \"disk!=hdd\"]";
    let array = match e.value() {
        Some(Value::Array(a)) => a,
        Some(Value::String(s)) => {
            ctx.error_hint(
                e.value_span(),
                &e.field,
                "expected an array of constraints, found a string",
                format!("write a list, even of one: constraints = [{:?}]", s.value()),
            );
            return Vec::new();
        }
        _ => {
            ctx.error_hint(
                e.value_span(),
                &e.field,
                format!(
                    "expected an array of constraints, found {}",
                    describe(e.item)
                ),
                format!("write `key=value` or `key!=value` strings, {example}"),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(array.len());
    for (i, v) in array.iter().enumerate() {
        let field = format!("{}[{i}]", e.field);
        let span = v.span().or_else(|| e.value_span());
        let Some(text) = v.as_str() else {
            ctx.error_hint(
                span,
                &field,
                format!("expected a constraint string, found {}", describe_value(v)),
                format!("write `key=value` or `key!=value`, {example}"),
            );
            continue;
        };
        match Constraint::parse(text) {
            Ok(c) => out.push(c.to_string()),
            Err(message) => ctx.error(span, &field, message.to_string()),
        }
    }
    out
}

/// `[services.NAME.tls]`: `cert` and `key` (the default certificate) and `[[...tls.sni]]`
/// elements with more; relative paths resolve against the deploy file's folder.
fn tls(ctx: &mut Ctx, table: &dyn TableLike, e: &Entry<'_>, base_dir: &Path) -> Option<TlsSpec> {
    let fields = entries(table, &e.field);
    ctx.check_fields(&fields, &TLS_FIELDS);
    let span = Some(header_span(ctx.text(), e));
    let mut certificates = vec![certificate(ctx, &fields, span, &e.field, base_dir)?];
    if let Some(sni) = fields.iter().find(|f| f.name == "sni") {
        let header = format!("[[{}]]", sni.field);
        for element in ctx.tables(sni, &header).unwrap_or_default() {
            let fields = entries(element.table, &element.field);
            ctx.check_fields(&fields, &CERTIFICATE_FIELDS);
            let pair = certificate(ctx, &fields, element.span, &element.field, base_dir);
            certificates.extend(pair);
        }
    }
    Some(TlsSpec { certificates })
}

/// A `cert` and `key` pair of paths from `fields` (of the table at `field`, found at `span`).
fn certificate(
    ctx: &mut Ctx,
    fields: &[Entry<'_>],
    span: Option<Range<usize>>,
    field: &str,
    base_dir: &Path,
) -> Option<CertificateFiles> {
    let mut path = |name: &str, hint: &str| -> Option<String> {
        let Some(e) = fields.iter().find(|f| f.name == name) else {
            ctx.error_hint(
                span.clone(),
                &format!("{field}.{name}"),
                format!("missing required field `{name}`"),
                hint,
            );
            return None;
        };
        let text = values::string(ctx, e)?;
        if text.is_empty() {
            ctx.error(e.value_span(), &e.field, format!("{name} is empty"));
            return None;
        }
        match normalized(base_dir.join(text)) {
            Ok(path) => Some(path),
            Err(_) => {
                ctx.error(e.value_span(), &e.field, "the path is not valid UTF-8");
                None
            }
        }
    };
    let cert = path(
        "cert",
        "add cert = \"cert.pem\", the certificate chain (PEM)",
    );
    let key = path("key", "add key = \"key.pem\", its private key (PEM)");
    Some(CertificateFiles {
        cert: cert?,
        key: key?,
    })
}

/// The working directory, resolved against the deploy file's folder (the default).
pub(crate) fn workdir(
    ctx: &mut Ctx,
    e: Option<&Entry<'_>>,
    base_dir: &Path,
    header: &Range<usize>,
    base: &str,
) -> Option<String> {
    let (dir, span, field) = match e {
        Some(e) => {
            let dir = values::string(ctx, e)?;
            if dir.is_empty() {
                ctx.error_hint(
                    e.value_span(),
                    &e.field,
                    "workdir is empty",
                    "leave it out to run in the deploy file's folder",
                );
                return None;
            }
            (base_dir.join(dir), e.value_span(), e.field.clone())
        }
        None => (
            base_dir.to_path_buf(),
            Some(header.clone()),
            format!("{base}.workdir"),
        ),
    };
    match normalized(dir) {
        Ok(dir) => Some(dir),
        Err(dir) => {
            ctx.error(
                span,
                &field,
                format!("working directory {dir:?} is not valid UTF-8"),
            );
            None
        }
    }
}

/// A path from a deploy file, already joined to its folder, without `.` components ("./app"
/// relative to /srv is /srv/app, not /srv/./app); the path back when it is not UTF-8.
fn normalized(path: PathBuf) -> Result<String, PathBuf> {
    let path: PathBuf = path
        .components()
        .filter(|c| *c != Component::CurDir)
        .collect();
    match path.to_str() {
        Some(s) => Ok(s.to_string()),
        None => Err(path),
    }
}

pub(crate) fn resources(ctx: &mut Ctx, table: &dyn TableLike, base: &str) -> Resources {
    let fields = entries(table, base);
    ctx.check_fields(&fields, &RESOURCE_FIELDS);
    let mut out = Resources::default();
    for e in &fields {
        match e.name {
            "cpu" => out.cpu_millis = values::cpu(ctx, e),
            "memory" => out.memory_bytes = values::size(ctx, e),
            _ => {}
        }
    }
    out
}

fn health(ctx: &mut Ctx, table: &dyn TableLike, base: &str) -> HealthSpec {
    let fields = entries(table, base);
    ctx.check_fields(&fields, &HEALTH_FIELDS);
    let mut out = HealthSpec::default();
    let kinds: Vec<&Entry<'_>> = fields
        .iter()
        .filter(|e| HEALTH_KINDS.contains(&e.name))
        .collect();
    if let [first, second, ..] = kinds.as_slice() {
        ctx.error_hint(
            second.key_span.clone(),
            &second.field,
            format!("`{}` and `{}` both given", first.name, second.name),
            "choose one health check: http = \"/path\", tcp = true or command = [...]",
        );
    }
    for e in &fields {
        match e.name {
            "http" => {
                if let Some(path) = values::string(ctx, e) {
                    out.check = HealthCheck::Http { path };
                }
            }
            "tcp" => {
                if let Some(check) = tcp(ctx, e) {
                    out.check = check;
                }
            }
            "command" => {
                if let Some(argv) = values::argv(ctx, e) {
                    out.check = HealthCheck::Command { argv };
                }
            }
            "interval" => out.interval = values::duration(ctx, e).unwrap_or(out.interval),
            "timeout" => out.timeout = values::duration(ctx, e).unwrap_or(out.timeout),
            "start_period" => {
                out.start_period = values::duration(ctx, e).unwrap_or(out.start_period)
            }
            "unhealthy_threshold" => {
                out.unhealthy_threshold =
                    values::count(ctx, e, MAX_HEALTH_THRESHOLD).unwrap_or(out.unhealthy_threshold)
            }
            "healthy_threshold" => {
                out.healthy_threshold =
                    values::count(ctx, e, MAX_HEALTH_THRESHOLD).unwrap_or(out.healthy_threshold)
            }
            _ => {}
        }
    }
    out
}

/// `tcp = true`; `false` is refused rather than silently meaning "the default, tcp".
fn tcp(ctx: &mut Ctx, e: &Entry<'_>) -> Option<HealthCheck> {
    match values::boolean(ctx, e)? {
        true => Some(HealthCheck::Tcp),
        false => {
            ctx.error_hint(
                e.value_span(),
                &e.field,
                "`tcp = false` would leave no health check",
                "every instance is checked: use http = \"/path\" or command = [...] instead, or leave `tcp` out",
            );
            None
        }
    }
}

pub(crate) fn stop(ctx: &mut Ctx, table: &dyn TableLike, base: &str) -> StopSpec {
    let fields = entries(table, base);
    ctx.check_fields(&fields, &STOP_FIELDS);
    let mut out = StopSpec::default();
    for e in &fields {
        match e.name {
            "signal" => out.signal = values::string(ctx, e).unwrap_or(out.signal),
            "grace" => out.grace = values::duration(ctx, e).unwrap_or(out.grace),
            _ => {}
        }
    }
    out
}

fn protocol(name: &str) -> Result<Protocol, String> {
    match name {
        "http" => Ok(Protocol::Http),
        "tcp" => Ok(Protocol::Tcp),
        other => Err(format!("unknown protocol {other:?}: use http or tcp")),
    }
}

/// The `[services.NAME.balance]` table; `protocol` is None when the service's own is invalid.
fn balance(
    ctx: &mut Ctx,
    table: &dyn TableLike,
    base: &str,
    protocol: Option<Protocol>,
) -> BalanceSpec {
    let fields = entries(table, base);
    ctx.check_fields(&fields, &BALANCE_FIELDS);
    let mut out = BalanceSpec::default();
    // Whether `out.algorithm` is what the file says (not a default standing in for a bad value).
    let mut algorithm_known = true;
    let mut hash_header = None;
    for e in &fields {
        match e.name {
            "algorithm" => {
                let parsed = values::choice(ctx, e, &BALANCE_ALGORITHMS, BalanceAlgorithm::parse);
                algorithm_known = parsed.is_some();
                out.algorithm = parsed.unwrap_or(out.algorithm);
            }
            "retries" => out.retries = values::count(ctx, e, MAX_RETRIES).unwrap_or(out.retries),
            "slow_start" => out.slow_start = values::duration(ctx, e).unwrap_or(out.slow_start),
            "drain" => out.drain = values::duration(ctx, e).unwrap_or(out.drain),
            "request_timeout" => {
                out.request_timeout = values::duration(ctx, e).unwrap_or(out.request_timeout)
            }
            "queue_timeout" => {
                out.queue_timeout = values::duration(ctx, e).unwrap_or(out.queue_timeout)
            }
            "hash_header" => hash_header = Some(e),
            _ => {}
        }
    }
    if let Some(e) = hash_header {
        // After the loop: `algorithm` may come after `hash_header` in the file. When the protocol
        // or the algorithm is itself wrong, that error is the one to fix: the default standing
        // in for it is not checked against, and the name is not kept (or ebb-core's own check
        // would report the mismatch with that default).
        let known = protocol.filter(|_| algorithm_known);
        let name = header_name(ctx, e, &out, known);
        out.hash_header = name.filter(|_| known.is_some());
    }
    out
}

/// `hash_header = "X-User-Id"`: a valid header name, stored in lower case, for a service that
/// hashes HTTP requests (checked when its `protocol` is known).
fn header_name(
    ctx: &mut Ctx,
    e: &Entry<'_>,
    balance: &BalanceSpec,
    protocol: Option<Protocol>,
) -> Option<String> {
    let name = values::string(ctx, e)?;
    let problem = protocol.and_then(|p| Some((p, balance.hash_header_problem(p)?)));
    if let Some((protocol, problem)) = problem {
        let hint = if protocol == Protocol::Tcp {
            "remove `hash_header`: a TCP service can hash only on the client address"
        } else {
            "set algorithm = \"hash\" in this table, or remove `hash_header`"
        };
        ctx.error_hint(e.value_span(), &e.field, problem, hint);
        return None;
    }
    parse_header_name(&name)
        .map_err(|message| ctx.error(e.value_span(), &e.field, message))
        .ok()
}

/// The public port of a service table, if it is written as a valid one; for the check that no
/// two services share a port. Errors about it are reported by [`convert`].
pub(crate) fn port_of(service: &dyn TableLike) -> Option<(u16, Range<usize>)> {
    let value = service.get("port")?.as_value()?;
    let port = u16::try_from(value.as_integer()?).ok().filter(|&p| p > 0)?;
    Some((port, value.span()?))
}

/// Where the field at `rest` (e.g. `.health.interval`, `.env.PORT`, `.autoscale.steps[1].from`,
/// or empty for the service itself) is in the file: its value, else its key, else the nearest
/// enclosing key or array element, else the service header. Lets errors from
/// [`ServiceSpec::validate`] point at the right place.
fn locate(text: &str, service: &dyn TableLike, rest: &str, header: &Range<usize>) -> Range<usize> {
    let rest = rest.strip_prefix('.').unwrap_or(rest);
    // An env variable's name may itself contain dots (or brackets), so it is one path segment;
    // and it is the name that is wrong, so point at the key.
    let (path, want_key): (Vec<(&str, Option<usize>)>, bool) = match rest.strip_prefix("env.") {
        Some(var) => (vec![("env", None), (var, None)], true),
        None if rest.is_empty() => (vec![], false),
        None => (rest.split('.').map(indexed).collect(), false),
    };
    let mut best = header.clone();
    let mut table = Some(service);
    for (i, &(part, index)) in path.iter().enumerate() {
        let Some((key, item)) = table.and_then(|t| t.get_key_value(part)) else {
            break;
        };
        let last = i + 1 == path.len();
        let span = if last && !want_key && index.is_none() {
            item.as_value()
                .and_then(|v| v.span())
                .or_else(|| key.span())
        } else {
            key.span()
        };
        if let Some(span) = span {
            best = span;
        }
        table = item.as_table_like();
        if let Some(index) = index {
            let Some(found) = element(text, item, index) else {
                break;
            };
            if let Some(span) = found.span {
                best = span;
            }
            table = found.table;
        }
    }
    best
}

/// `steps[1]` → (`steps`, Some(1)); anything else is a plain key.
fn indexed(segment: &str) -> (&str, Option<usize>) {
    segment
        .strip_suffix(']')
        .and_then(|s| s.split_once('['))
        .and_then(|(name, i)| Some((name, Some(i.parse().ok()?))))
        .unwrap_or((segment, None))
}
