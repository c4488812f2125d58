//! Services: apply (create or update), list, scale, stop; and the instance and status views.

use super::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult};
use crate::controllers::instances::current_status;
use crate::state::keys::{self, Versioned};
use crate::{now_ms, Server};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ebb_core::api::{
    ApplyRequest, ApplyResponse, Change, InstanceView, ScaleRequest, ServiceChange, ServiceView,
    StatusView,
};
use ebb_core::service::{validate_service_name, MAX_INSTANCES};
use ebb_core::{Assignment, DesiredState, Event, EventKind, InstanceState, ServiceSpec};
use ebb_store::{Expect, Op};
use serde::Deserialize;
use std::collections::HashSet;

/// `PUT /v1/services`: validates every spec first, then writes all of them in one transaction,
/// so that a bad request changes nothing.
pub async fn apply(
    State(server): State<Server>,
    ApiQuery(q): ApiQuery<ApplyQuery>,
    ApiJson(req): ApiJson<ApplyRequest>,
) -> ApiResult<ApplyResponse> {
    validate_all(
        &req.services,
        !req.jobs.is_empty() || !req.queues.is_empty(),
    )?;
    let stored = keys::services(server.store())?;
    check_ports(&server, &stored, &req.services)?;
    let jobs = super::jobs::plan_apply(&server, &req, &stored)?;
    let mut ops = jobs.ops;
    let mut changes = Vec::new();
    for spec in &req.services {
        let existing = stored.iter().find(|v| v.value.name == spec.name);
        let spec = &keep_server_state(existing.map(|v| &v.value), spec);
        let change = change_of(existing.map(|v| &v.value), spec);
        if change != Change::Unchanged {
            let expect = existing.map_or(Expect::Absent, |v| Expect::ModRevision(v.mod_revision));
            ops.push(Op::Put {
                key: keys::service(&spec.name),
                value: keys::encode(spec),
                expect,
            });
        }
        changes.push(ServiceChange {
            service: spec.name.clone(),
            change,
        });
    }
    if q.dry_run {
        let dry_run = dry_run(&server, &stored, &req.services, &changes)?;
        return Ok(Json(ApplyResponse {
            changes,
            jobs: jobs.changes,
            dry_run: Some(dry_run),
        }));
    }
    if !ops.is_empty() {
        server.store().txn(ops)?;
    }
    for c in &changes {
        record_change(&server, c);
    }
    server.record_all(jobs.events);
    Ok(Json(ApplyResponse {
        changes,
        jobs: jobs.changes,
        dry_run: None,
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyQuery {
    /// Validate and plan, write nothing.
    #[serde(default)]
    dry_run: bool,
}

/// What an apply would do beyond its changes: the instances an update rolls, and whether the
/// instances it starts fit (a rollout needs room for one new instance at a time; a new or
/// scaled-up service for all of its new ones).
fn dry_run(
    server: &Server,
    stored: &[Versioned<ServiceSpec>],
    specs: &[ServiceSpec],
    changes: &[ServiceChange],
) -> Result<ebb_core::api::DryRun, ApiError> {
    let (assignments, revision) = keys::assignments(server.store())?;
    let mut rolls = std::collections::BTreeMap::new();
    let mut wanted = Vec::new();
    for (spec, c) in specs.iter().zip(changes) {
        let existing = stored.iter().find(|v| v.value.name == spec.name);
        let spec = keep_server_state(existing.map(|v| &v.value), spec);
        let new = match c.change {
            Change::Created { instances } => instances,
            Change::Updated { .. } => {
                let live: Vec<String> = assignments
                    .iter()
                    .map(|a| &a.value)
                    .filter(|a| a.service == spec.name && a.desired == DesiredState::Run)
                    .map(|a| a.id.clone())
                    .collect();
                // The instances added by a larger count, and room for one replacement at a
                // time while the others roll.
                let count = u32::try_from(live.len()).unwrap_or(u32::MAX);
                let surge = u32::from(count > 0 && spec.instances > 0);
                rolls.insert(spec.name.clone(), live);
                spec.instances.saturating_sub(count) + surge
            }
            Change::Scaled { from, to } => to.saturating_sub(from),
            Change::Rerouted | Change::Unchanged => 0,
        };
        wanted.push((spec, new));
    }
    let asked: Vec<(&ServiceSpec, u32)> = wanted.iter().map(|(s, n)| (s, *n)).collect();
    let unplaceable = crate::controllers::instances::dry_run::unplaceable(
        server,
        (&assignments, revision),
        &asked,
    )?;
    Ok(ebb_core::api::DryRun { rolls, unplaceable })
}

/// What the server, not the file, decides survives a redeploy: an autoscaled service keeps the
/// count the autoscaler chose (within the new bounds) instead of the file's initial count, and
/// every service keeps its restart count (so a redeploy does not roll it again).
fn keep_server_state(existing: Option<&ServiceSpec>, spec: &ServiceSpec) -> ServiceSpec {
    let mut spec = spec.clone();
    spec.restart = existing.map_or(0, |old| old.restart);
    if let (Some(old), Some(a)) = (existing, &spec.autoscale) {
        if old.autoscale.is_some() {
            spec.instances = old.instances.clamp(a.min, a.max);
        }
    }
    spec
}

fn validate_all(specs: &[ServiceSpec], has_jobs: bool) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for spec in specs {
        if !seen.insert(&spec.name) {
            problems.push(format!("services.{}: duplicate service name", spec.name));
        }
        let invalid = spec.validate();
        problems.extend(invalid.iter().map(ToString::to_string));
        // The router reads the certificate files on this machine: they must load now, not
        // fail later on a listener.
        if let (true, Some(tls)) = (invalid.is_empty(), &spec.tls) {
            if let Err(e) = ebb_router::tls::check(&tls.certificates, std::time::SystemTime::now())
            {
                problems.push(format!("services.{}.tls: {e}", spec.name));
            }
        }
    }
    if specs.is_empty() && !has_jobs {
        problems.push("no services, jobs or queues given".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            problems.join("\n"),
        ))
    }
}

/// A public port must be unique among services and, unless this service already holds it,
/// free on the machine. Refused at deploy time, naming the port and who has it.
fn check_ports(
    server: &Server,
    stored: &[Versioned<ServiceSpec>],
    specs: &[ServiceSpec],
) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let Some(port) = spec.port else { continue };
        let clash_in_request = specs[..i].iter().find(|o| o.port == Some(port));
        let clash_stored = stored.iter().map(|v| &v.value).find(|o| {
            o.port == Some(port) && o.name != spec.name && !specs.iter().any(|n| n.name == o.name)
        });
        if let Some(other) = clash_in_request.or(clash_stored) {
            problems.push(format!(
                "services.{}.port: port {port} is already used by service {:?}; each service needs its own port",
                spec.name, other.name
            ));
        } else if let Some(router) = server.router() {
            if let Err(m) = router.check_port(&spec.name, port) {
                problems.push(format!("services.{}.port: {m}", spec.name));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::CONFLICT, problems.join("\n")))
    }
}

fn change_of(existing: Option<&ServiceSpec>, spec: &ServiceSpec) -> Change {
    match existing {
        None => Change::Created {
            instances: spec.instances,
        },
        Some(old) if old.version() != spec.version() => Change::Updated {
            instances: spec.instances,
        },
        Some(old) if old.instances != spec.instances => Change::Scaled {
            from: old.instances,
            to: spec.instances,
        },
        Some(old) if old != spec => Change::Rerouted,
        Some(_) => Change::Unchanged,
    }
}

fn record_change(server: &Server, c: &ServiceChange) {
    let (kind, message) = match &c.change {
        Change::Created { instances } => (
            EventKind::ServiceCreated,
            format!("service created with {instances} instances"),
        ),
        Change::Updated { instances } => (
            EventKind::ServiceUpdated,
            format!("spec changed: rolling {instances} instances one at a time"),
        ),
        Change::Scaled { from, to } => (
            EventKind::ServiceScaled,
            format!("scaled from {from} to {to} instances"),
        ),
        Change::Rerouted => (
            EventKind::ServiceUpdated,
            "load balancer settings changed; instances keep running".to_string(),
        ),
        Change::Unchanged => return,
    };
    server.record(Event::new(now_ms(), kind, message).service(&c.service));
}

pub async fn list(State(server): State<Server>) -> ApiResult<Vec<ServiceView>> {
    Ok(Json(service_views(&server)?))
}

pub async fn get_one(
    State(server): State<Server>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<ServiceView> {
    let views = service_views(&server)?;
    views
        .into_iter()
        .find(|v| v.name == name)
        .map(Json)
        .ok_or_else(|| no_such_service(&name))
}

/// `POST /v1/services/{name}/scale`.
pub async fn scale(
    State(server): State<Server>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<ScaleRequest>,
) -> ApiResult<ServiceView> {
    let Versioned {
        value: mut spec,
        mod_revision,
        ..
    } = stored_service(&server, &name)?;
    let from = spec.instances;
    let before = spec.clone();
    scaled_spec(&mut spec, &req)?;
    if spec != before {
        server.store().put(
            &keys::service(&name),
            &keys::encode(&spec),
            Expect::ModRevision(mod_revision),
        )?;
        record_change(
            &server,
            &ServiceChange {
                service: name.clone(),
                change: Change::Scaled {
                    from,
                    to: spec.instances,
                },
            },
        );
    }
    get_one(State(server), ApiPath(name)).await
}

/// How many times a restart is tried again when another write to the service came first.
const RESTART_TRIES: u32 = 5;

/// `POST /v1/services/{name}/restart`: every instance is replaced by a new one, one at a time,
/// start-before-stop, as a spec change rolls them (the restart count is part of the version).
pub async fn restart(
    State(server): State<Server>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<ServiceView> {
    // An increment: safe to apply again on the latest spec when another write (the
    // autoscaler's, a deploy) came in between.
    let mut tries = 0;
    let spec = loop {
        let Versioned {
            value: mut spec,
            mod_revision,
            ..
        } = stored_service(&server, &name)?;
        spec.restart = spec.restart.saturating_add(1);
        let written = server.store().put(
            &keys::service(&name),
            &keys::encode(&spec),
            Expect::ModRevision(mod_revision),
        );
        match written {
            Ok(_) => break spec,
            Err(ebb_store::StoreError::Conflict { .. }) if tries < RESTART_TRIES => tries += 1,
            Err(e) => return Err(e.into()),
        }
    };
    let message = format!(
        "restart asked: rolling {} instances one at a time, each replaced by a new one started first",
        spec.instances
    );
    server.record(Event::new(now_ms(), EventKind::ServiceUpdated, message).service(&name));
    get_one(State(server), ApiPath(name)).await
}

/// Applies a scale request to `spec`: a fixed count, or new autoscaling bounds (the count is
/// then clamped into them at once; the autoscaler moves it from there).
fn scaled_spec(spec: &mut ServiceSpec, req: &ScaleRequest) -> Result<(), ApiError> {
    let unprocessable = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m);
    match (&mut spec.autoscale, req.instances) {
        (Some(a), Some(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "{} is autoscaled between {} and {} instances, so its count is not set by hand; \
                 change its bounds instead: `ebb scale {} --min N --max M`",
                spec.name, a.min, a.max, spec.name
            ),
        )),
        (None, Some(n)) if n > MAX_INSTANCES => Err(unprocessable(format!(
            "{n} instances is more than the limit of {MAX_INSTANCES}"
        ))),
        (None, Some(n)) => {
            spec.instances = n;
            Ok(())
        }
        (None, None) => Err(ApiError::bad_request(format!(
            "{} is not autoscaled: give a count (`ebb scale {} N`); bounds need an `autoscale` table in its deploy file",
            spec.name, spec.name
        ))),
        (Some(a), None) => {
            let (min, max) = (req.min.unwrap_or(a.min), req.max.unwrap_or(a.max));
            if req.min.is_none() && req.max.is_none() {
                return Err(ApiError::bad_request("give --min, --max or both"));
            }
            if max == 0 || max > MAX_INSTANCES || min > max {
                return Err(unprocessable(format!(
                    "bounds {min}..{max} are not valid: need 0 ≤ min ≤ max, 1 ≤ max ≤ {MAX_INSTANCES}"
                )));
            }
            a.min = min;
            a.max = max;
            spec.instances = spec.instances.clamp(min, max);
            Ok(())
        }
    }
}

/// `DELETE /v1/services/{name}`: removes the service; the controller stops its instances.
pub async fn stop(
    State(server): State<Server>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<ServiceView> {
    let Json(view) = get_one(State(server.clone()), ApiPath(name.clone())).await?;
    server.store().delete(&keys::service(&name), Expect::Any)?;
    server.record(
        Event::new(
            now_ms(),
            EventKind::ServiceStopped,
            format!("service removed: stopping its {} instances", view.placed),
        )
        .service(&name),
    );
    Ok(Json(view))
}

/// Service `name`'s stored spec with its revision, or why there is none (404, or 400 for a
/// name no service could have).
fn stored_service(server: &Server, name: &str) -> Result<Versioned<ServiceSpec>, ApiError> {
    keys::get_service(server.store(), name)?.ok_or_else(|| no_such_service(name))
}

fn no_such_service(name: &str) -> ApiError {
    match validate_service_name(name) {
        Err(m) => ApiError::bad_request(m),
        Ok(()) => ApiError::not_found(format!(
            "no service named {name:?}; `ebb status` lists the services"
        )),
    }
}

#[derive(Deserialize)]
pub struct InstancesQuery {
    service: Option<String>,
}

pub async fn instances(
    State(server): State<Server>,
    ApiQuery(q): ApiQuery<InstancesQuery>,
) -> ApiResult<Vec<InstanceView>> {
    // Assignments first, statuses after: a controller's write (an old version stopped) always
    // follows the status it acted on (the new one ready), so this order never shows the
    // write without its cause.
    let (assignments, _) = keys::assignments(server.store())?;
    let statuses = server.statuses();
    let mut usage = server.nodes().instance_usage();
    let mut traffic = server
        .router()
        .map(|r| r.instance_traffic(crate::routing::traffic::VIEW_WINDOW))
        .unwrap_or_default();
    let views = assignments
        .iter()
        .filter(|a| q.service.as_deref().is_none_or(|s| a.value.service == s))
        .map(|a| {
            let mut view = InstanceView::new(&a.value, current_status(&a.value, &statuses));
            view.traffic = traffic.remove(&a.value.id);
            view.usage = usage
                .remove(&a.value.id)
                .filter(|u| u.generation == a.value.generation);
            view
        })
        .collect();
    Ok(Json(views))
}

pub async fn status(
    State(server): State<Server>,
    session: Option<axum::Extension<crate::ui::SessionRead>>,
) -> ApiResult<StatusView> {
    let (assignments, _) = keys::assignments(server.store())?;
    let mut services = service_views_with(&server, &assignments)?;
    let mut jobs = super::jobs::job_views_with(&server, &assignments)?;
    if session.is_some() {
        // The dashboard shows no spec, and a spec may hold secrets (an environment, a command
        // line); a page on another port of this host might see the session's cookie (see
        // `crate::ui::SESSION_PATHS`): a session gets each spec's name alone.
        for s in &mut services {
            s.spec = ebb_core::ServiceSpec::new(s.name.clone(), Vec::new());
        }
        for j in &mut jobs {
            j.spec = ebb_core::JobSpec::new(j.name.clone(), Vec::new(), j.tasks);
        }
    }
    Ok(Json(StatusView {
        version: env!("CARGO_PKG_VERSION").to_string(),
        node_count: server.nodes().live(std::time::Instant::now()).len(),
        services,
        store_revision: server.store().revision()?,
        uptime_ms: server.started().elapsed().as_millis() as u64,
        resource_enforcement: server.nodes().enforcement(),
        store: server
            .store()
            .health()
            .unwrap_or_else(|e| format!("{}: {e}", server.store().describe())),
        leader: super::servers::leader_name(&server),
        jobs,
        server: server
            .identity()
            .map(|me| me.name.clone())
            .unwrap_or_default(),
    }))
}

/// Every service with its rollout progress.
pub fn service_views(server: &Server) -> Result<Vec<ServiceView>, ApiError> {
    // Assignments before statuses, as in `instances`.
    let (assignments, _) = keys::assignments(server.store())?;
    service_views_with(server, &assignments)
}

/// [`service_views`] with the assignments already read (before the statuses).
pub(crate) fn service_views_with(
    server: &Server,
    assignments: &[Versioned<Assignment>],
) -> Result<Vec<ServiceView>, ApiError> {
    let statuses = server.statuses();
    let views = keys::services(server.store())?
        .into_iter()
        .map(|Versioned { value: spec, .. }| {
            let version = spec.version();
            let live: Vec<&Assignment> = assignments
                .iter()
                .map(|a| &a.value)
                .filter(|a| a.service == spec.name && a.desired == DesiredState::Run)
                .collect();
            let ready = live
                .iter()
                .filter(|a| {
                    a.version == version && current_status(a, &statuses).is_some_and(|s| s.ready)
                })
                .count() as u32;
            let outdated = live.iter().filter(|a| a.version != version).count() as u32;
            let running = live
                .iter()
                .filter(|a| {
                    current_status(a, &statuses).is_some_and(|s| s.state == InstanceState::Running)
                })
                .count() as u32;
            ServiceView {
                name: spec.name.clone(),
                version,
                desired: spec.instances,
                placed: live.len() as u32,
                running,
                ready,
                outdated,
                autoscale_reason: server.autoscale_reasons().get(&spec.name),
                pending_reason: server.instance_reports().pending_reason(&spec.name),
                spec,
            }
        })
        .collect();
    Ok(views)
}
