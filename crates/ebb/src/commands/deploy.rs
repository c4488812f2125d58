//! `ebb deploy`, `ebb scale`, `ebb stop`: change desired state, then show progress until done.

use crate::output::{out, out_inline};
use ebb_client::Client;
use ebb_core::api::{Change, ScaleRequest, ServiceChange, ServiceView};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// An apply the server refused for what the files say (a port another service or program
/// holds, a spec only the server can judge: [`super::invalid_status`]) is invalid input like
/// a bad file: exit 2, and the message says that nothing was applied.
pub fn refused_as_invalid(e: ebb_client::ClientError) -> anyhow::Error {
    match e.status() {
        Some(status) if super::invalid_status(status) => anyhow::Error::new(super::Exit {
            code: super::EXIT_INVALID,
            message: format!("error: {e}\nnothing was applied"),
        }),
        _ => e.into(),
    }
}

/// How often progress is polled.
const POLL: Duration = Duration::from_millis(200);

pub async fn deploy(client: &Client, args: &crate::cli::DeployArgs) -> anyhow::Result<()> {
    let req: ebb_core::api::ApplyRequest = super::parse_deploy_files(&args.files)?.into();
    if args.dry_run {
        return dry_run(client, &req, args.json).await;
    }
    let resp = client
        .apply_request(&req)
        .await
        .map_err(refused_as_invalid)?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&resp)?);
        return Ok(());
    }
    print_changes(&req, &resp);
    if args.detach || resp.changes.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = resp.changes.iter().map(|c| c.service.clone()).collect();
    wait_ready(client, &names, args.timeout).await
}

/// `ebb deploy --dry-run`: the plan, nothing applied. Exit 1 when new instances would not fit.
async fn dry_run(
    client: &Client,
    req: &ebb_core::api::ApplyRequest,
    json: bool,
) -> anyhow::Result<()> {
    let resp = client.plan_request(req).await.map_err(refused_as_invalid)?;
    let plan = resp.dry_run.clone().unwrap_or_default();
    if json {
        out!("{}", serde_json::to_string_pretty(&resp)?);
    } else {
        print_changes(req, &resp);
        for (service, ids) in &plan.rolls {
            if !ids.is_empty() {
                out!("{service}: would roll {}", ids.join(", "));
            }
        }
        if plan.unplaceable.is_empty() {
            out!("fits: every new instance has a node");
        }
        for why in &plan.unplaceable {
            out!("does not fit: {why}");
        }
        out!("dry run: nothing was applied");
    }
    if plan.unplaceable.is_empty() {
        Ok(())
    } else {
        Err(anyhow::Error::new(super::Exit {
            code: 1,
            message: format!(
                "error: {} service(s) would not fit; nothing was applied",
                plan.unplaceable.len()
            ),
        }))
    }
}

fn print_changes(req: &ebb_core::api::ApplyRequest, resp: &ebb_core::api::ApplyResponse) {
    for c in &resp.changes {
        out!("{}", describe(c));
    }
    for j in &resp.jobs {
        out!(
            "{}: job {} (run {}); follow it with `ebb job {}`",
            j.job,
            j.change,
            j.run,
            j.job
        );
    }
    for q in &req.queues {
        out!("{}: queue, weight {}", q.name, q.weight);
    }
}

fn describe(c: &ServiceChange) -> String {
    match &c.change {
        Change::Created { instances } => format!("{}: created, {instances} instances", c.service),
        Change::Updated { instances } => format!(
            "{}: updated, rolling {instances} instances one at a time",
            c.service
        ),
        Change::Scaled { from, to } => format!("{}: scaled {from} → {to} instances", c.service),
        Change::Rerouted => format!(
            "{}: load balancer settings changed, instances keep running",
            c.service
        ),
        Change::Unchanged => format!("{}: unchanged", c.service),
    }
}

/// Instances placed to run. A server older than `placed` reported them as `running`.
pub fn placed(v: &ServiceView) -> u32 {
    v.placed.max(v.running)
}

/// A service is settled when every instance it should run is on its version and ready.
fn settled(v: &ServiceView) -> bool {
    v.ready == v.desired && placed(v) == v.desired && v.outdated == 0
}

fn progress_line(views: &[&ServiceView]) -> String {
    views
        .iter()
        .map(|v| {
            let mut s = format!("{} {}/{} ready", v.name, v.ready, v.desired);
            if v.outdated > 0 {
                s.push_str(&format!(", {} to replace", v.outdated));
            }
            if let Some(why) = &v.pending_reason {
                s.push_str(&format!(" (pending: {why})"));
            }
            s
        })
        .collect::<Vec<_>>()
        .join("  ")
}

/// Polls until the named services are settled, printing progress (one updating line on a TTY).
pub async fn wait_ready(
    client: &Client,
    names: &[String],
    timeout: Duration,
) -> anyhow::Result<()> {
    let tty = std::io::stdout().is_terminal();
    let start = Instant::now();
    let mut last = String::new();
    // Each instance's last reason printed, so that each new one is said once, as it happens.
    let mut reasons: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let all = client.services().await?;
        let views: Vec<&ServiceView> = all.iter().filter(|v| names.contains(&v.name)).collect();
        let settled_all = views.iter().all(|v| settled(v));
        let fresh = if settled_all {
            Vec::new()
        } else {
            new_reasons(client, names, &mut reasons).await?
        };
        for (id, why) in fresh {
            if tty {
                out!("\r\x1b[2K{id}: {why}");
                last.clear();
            } else {
                out!("{id}: {why}");
            }
        }
        let line = progress_line(&views);
        if line != last {
            if tty {
                out_inline!("\r\x1b[2K{line}");
            } else {
                out!("{line}");
            }
            last = line;
        }
        if settled_all {
            if tty {
                out!();
            }
            out!("ready in {:.1}s", start.elapsed().as_secs_f64());
            return Ok(());
        }
        if start.elapsed() > timeout {
            if tty {
                out!();
            }
            let why: String = reasons
                .iter()
                .map(|(id, why)| format!("\n  {id}: {why}"))
                .collect();
            anyhow::bail!(
                "not ready after {}: {last}{why}\n  hint: `ebb events` says why, `ebb logs SERVICE` shows the instances' output",
                ebb_core::quantity::format_duration(timeout)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Reasons of the named services' instances that changed since `said`, which keeps the
/// latest reason of each instance that has one (an instance that became ready drops out).
async fn new_reasons(
    client: &Client,
    names: &[String],
    said: &mut BTreeMap<String, String>,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut instances = Vec::new();
    for name in names {
        instances.extend(client.instances(Some(name)).await?);
    }
    let mut fresh = Vec::new();
    let mut now = BTreeMap::new();
    for i in &instances {
        if i.desired != ebb_core::DesiredState::Run {
            continue;
        }
        if let Some(why) = &i.reason {
            if said.get(&i.id) != Some(why) {
                fresh.push((i.id.clone(), why.clone()));
            }
            now.insert(i.id.clone(), why.clone());
        }
    }
    *said = now;
    Ok(fresh)
}

/// `ebb scale SERVICE N` or `ebb scale SERVICE --min A --max B`.
pub async fn scale(
    client: &Client,
    service: &str,
    req: ScaleRequest,
    json: bool,
) -> anyhow::Result<()> {
    let before = client.service(service).await?;
    let after = client.scale(service, &req).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&after)?);
        return Ok(());
    }
    if let Some(a) = &after.spec.autoscale {
        out!(
            "{service}: autoscaled between {} and {} instances (now {})",
            a.min,
            a.max,
            after.desired
        );
    } else if before.desired == after.desired {
        out!("{service}: already at {} instances", after.desired);
    } else {
        out!(
            "{service}: scaled {} → {} instances",
            before.desired,
            after.desired
        );
    }
    Ok(())
}

/// `ebb stop SERVICE...`: every name is checked first, so that a typo removes nothing; then
/// each is removed and, unless `detach`, their instances are waited for together.
pub async fn stop(
    client: &Client,
    services: &[String],
    detach: bool,
    json: bool,
) -> anyhow::Result<()> {
    let services = &super::unique(services)[..];
    let known = client.services().await?;
    if let Some(unknown) = services
        .iter()
        .find(|s| !known.iter().any(|k| &k.name == *s))
    {
        return Err(anyhow::Error::new(super::Exit {
            code: super::EXIT_INVALID,
            message: format!(
                "error: no service named {unknown:?}: `ebb status` lists the services\nnothing was stopped"
            ),
        }));
    }
    let mut removed = Vec::new();
    for service in services {
        let view = client.stop(service).await?;
        if !json {
            out!("{service}: removed, stopping {} instances", view.placed);
        }
        removed.push(view);
    }
    if json {
        out!("{}", serde_json::to_string_pretty(&removed)?);
        return Ok(());
    }
    if detach {
        return Ok(());
    }
    let start = Instant::now();
    let mut waiting: Vec<&String> = services.iter().collect();
    loop {
        let instances = client.instances(None).await?;
        let mut left = 0;
        waiting.retain(|service| {
            let n = instances.iter().filter(|i| &i.service == *service).count();
            left += n;
            if n == 0 {
                out!(
                    "{service}: all instances stopped in {:.1}s",
                    start.elapsed().as_secs_f64()
                );
            }
            n > 0
        });
        if waiting.is_empty() {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(600) {
            let names: Vec<&str> = waiting.iter().map(|s| s.as_str()).collect();
            anyhow::bail!(
                "{left} instances of {} still stopping after 10 minutes; see `ebb ps`",
                names.join(", ")
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
