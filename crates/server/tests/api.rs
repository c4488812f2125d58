//! The API over real HTTP and a real SQLite store: auth, JSON errors, apply semantics, and the
//! controller assigning instances to a node that syncs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use ebb_client::Client;
use ebb_core::api::{NodeInfo, ScaleRequest, SyncRequest};
use ebb_core::{DesiredState, InstanceState, InstanceStatus, ServiceSpec};
use ebb_server::{ControlPlane, PlaneConfig, Server};
use ebb_store::SqliteStore;
use ebb_testkit::eventually_async;
use std::sync::Arc;
use std::time::Duration;

struct Harness {
    _dir: tempfile::TempDir,
    addr: String,
    token: String,
    /// Stops every task when the test ends (dropped).
    _plane: ControlPlane,
}

async fn start() -> Harness {
    start_with(|_| {}).await
}

/// [`start`] with the server configured by `setup` first (a join token, say).
async fn start_with(setup: impl FnOnce(&Server)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let token = ebb_server::auth::load_or_create_token(dir.path()).unwrap();
    let server = Server::new(store, token.clone()).unwrap();
    setup(&server);
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // The control plane as `ebb server` runs it: API, controller, router on loopback.
    let plane = ControlPlane::start(PlaneConfig {
        server,
        api,
        router_bind: std::net::Ipv4Addr::LOCALHOST.into(),
        router_threads: Some(1),
        max_connections: 1024,
        api_tls: None,
        read_ahead: Arc::new(ebb_router::read_ahead::ReadAhead::in_memory()),
        api_trust: None,
    })
    .unwrap();
    Harness {
        _dir: dir,
        addr: plane.api_addr().to_string(),
        token,
        _plane: plane,
    }
}

fn spec(name: &str, instances: u32) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        command: vec!["sleep".into(), "1000".into()],
        instances,
        env: Default::default(),
        workdir: None,
        resources: Default::default(),
        health: Default::default(),
        stop: Default::default(),
        port: None,
        protocol: Default::default(),
        balance: Default::default(),
        autoscale: None,
        constraints: Vec::new(),
        placement: Default::default(),
        tls: None,
        priority: None,
        restart: 0,
    }
}

async fn raw(
    h: &Harness,
    method: reqwest::Method,
    path: &str,
    body: Vec<u8>,
    auth: bool,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("http://{}{path}", h.addr))
        .header("content-type", "application/json")
        .body(body);
    if auth {
        req = req.bearer_auth(&h.token);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let json = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, json)
}

#[tokio::test]
async fn calls_without_the_token_are_refused_with_a_json_401() {
    let h = start().await;
    let (status, body) = raw(&h, reqwest::Method::GET, "/v1/status", vec![], false).await;
    assert_eq!(status, 401);
    assert!(body["error"].as_str().unwrap().contains("token"));
    let wrong = Client::new(&h.addr, Some("nope".into())).unwrap();
    assert_eq!(wrong.status().await.unwrap_err().status(), Some(401));
}

#[tokio::test]
async fn malformed_json_and_oversized_bodies_get_4xx_json_errors() {
    let h = start().await;
    let (status, body) = raw(
        &h,
        reqwest::Method::PUT,
        "/v1/services",
        b"{not json".to_vec(),
        true,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("invalid JSON"));
    let (status, body) = raw(
        &h,
        reqwest::Method::PUT,
        "/v1/services",
        b"{\"services\": 5}".to_vec(),
        true,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let big = vec![b' '; ebb_core::api::MAX_BODY_BYTES + 10];
    let (status, body) = raw(&h, reqwest::Method::PUT, "/v1/services", big, true).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].as_str().unwrap().contains("larger than"));
    let (status, body) = raw(
        &h,
        reqwest::Method::GET,
        "/v1/events?after=soon",
        vec![],
        true,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("invalid query"),
        "{body}"
    );
    let (status, body) = raw(&h, reqwest::Method::GET, "/v1/nowhere", vec![], true).await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn traffic_reports_need_the_token_and_bad_ones_say_what_is_wrong() {
    let h = start().await;
    let report = |bucket: u64| {
        serde_json::json!({
            "server": "s2", "incarnation": 1, "at_ms": 5,
            "services": [{"service": "web", "series": 1, "responses": [0, 3, 0, 0, 0],
                "latency": [[bucket, 3]], "busy_ns": 10, "in_flight": 0, "queued": 0,
                "connect_errors": 0, "retries": 0, "ejections": 0}]
        })
        .to_string()
        .into_bytes()
    };
    let post = reqwest::Method::POST;
    let (status, _) = raw(&h, post.clone(), "/v1/traffic", report(3), false).await;
    assert_eq!(status, 401);
    // A server alone has no other server to hear from.
    let (status, body) = raw(&h, post.clone(), "/v1/traffic", report(3), true).await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("\"s2\", which is not a server of this control plane"),
        "{error}"
    );
    let (status, body) = raw(&h, post, "/v1/traffic", b"{\"server\": 7}".to_vec(), true).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("server"), "{body}");
}

#[tokio::test]
async fn an_invalid_spec_in_a_batch_changes_nothing() {
    let h = start().await;
    let client = Client::new(&h.addr, Some(h.token.clone())).unwrap();
    let mut bad = spec("bad", 1);
    bad.command.clear();
    let err = client.apply(vec![spec("good", 1), bad]).await.unwrap_err();
    assert_eq!(err.status(), Some(422));
    assert!(err.to_string().contains("services.bad.command"), "{err}");
    assert!(client.services().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_drain_of_u64_max_milliseconds_is_refused_naming_the_field_and_the_limit() {
    let h = start().await;
    let client = Client::new(&h.addr, Some(h.token.clone())).unwrap();
    let mut absurd = spec("absurd", 1);
    absurd.port = Some(18_080);
    absurd.balance.drain = Duration::from_millis(u64::MAX);
    let err = client.apply(vec![absurd]).await.unwrap_err();
    assert_eq!(err.status(), Some(422));
    let message = err.to_string();
    assert!(
        message.contains("services.absurd.balance.drain"),
        "{message}"
    );
    assert!(message.contains("more than the limit of 1h"), "{message}");
    assert!(client.services().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_silent_connection_to_the_api_is_closed_at_the_header_timeout() {
    use tokio::io::AsyncReadExt;
    let h = start().await;
    let mut silent = tokio::net::TcpStream::connect(&h.addr).await.unwrap();
    let opened = std::time::Instant::now();
    // Meanwhile the API answers others.
    let client = Client::new(&h.addr, Some(h.token.clone())).unwrap();
    client.services().await.unwrap();
    let limit = ebb_server::plane::API_HEADER_READ_TIMEOUT + Duration::from_secs(5);
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(limit, silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "still open after {:?}",
        opened.elapsed()
    );
}

#[tokio::test]
async fn node_names_that_could_reach_other_keys_are_refused() {
    let h = start().await;
    let client = Client::new(&h.addr, Some(h.token.clone())).unwrap();
    // (A name of `..` never reaches a handler: the URL resolves it away first.)
    for bad in ["a/b", "a b", "x\u{e9}"] {
        let mut info = node();
        info.name = bad.into();
        let req = SyncRequest {
            node: info,
            statuses: Vec::new(),
            events: Vec::new(),
            usage: Vec::new(),
            node_usage: None,
        };
        let err = client.sync(&req).await.unwrap_err();
        assert_eq!(err.status(), Some(400), "{bad:?}: {err}");
        assert!(err.to_string().contains("node name"), "{err}");
    }
    assert!(
        client.nodes().await.unwrap().is_empty(),
        "nothing registered"
    );
}

#[tokio::test]
async fn an_agent_reports_only_events_of_its_instances_and_as_its_own_node() {
    let h = start().await;
    let client = Client::new(&h.addr, Some(h.token.clone())).unwrap();
    let forged = ebb_core::Event::new(1, ebb_core::EventKind::NodeDown, "node n9 is down (forged)")
        .node("n9");
    let genuine =
        ebb_core::Event::new(2, ebb_core::EventKind::InstanceExited, "exited (genuine)").node("n9");
    let req = SyncRequest {
        node: node(),
        statuses: Vec::new(),
        events: vec![forged, genuine],
        usage: Vec::new(),
        node_usage: None,
    };
    client.sync(&req).await.unwrap();
    let events = client.events(0, 100, Duration::ZERO).await.unwrap().events;
    assert!(!events.iter().any(|e| e.message.contains("forged")));
    let kept = events
        .iter()
        .find(|e| e.message.contains("genuine"))
        .expect("the instance event is kept");
    assert_eq!(kept.node.as_deref(), Some("n1"), "marked with the sender");
}

#[tokio::test]
async fn scale_and_stop_of_unknown_services_say_so() {
    let h = start().await;
    let client = Client::new(&h.addr, Some(h.token.clone())).unwrap();
    let err = client
        .scale("ghost", &ScaleRequest::count(2))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert!(err.to_string().contains("no service named \"ghost\""));
    client.apply(vec![spec("web", 1)]).await.unwrap();
    let err = client
        .scale("web", &ScaleRequest::count(1_000_000))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(422));
}

fn node() -> NodeInfo {
    NodeInfo {
        name: "n1".into(),
        address: "127.0.0.1".into(),
        cpu_millis: 2000,
        memory_bytes: 1 << 30,
        enforcement: "none: test".into(),
        labels: Default::default(),
    }
}

/// A sync of node `name` at 127.0.0.1 reporting `statuses`.
fn sync_of(name: &str, statuses: Vec<InstanceStatus>) -> SyncRequest {
    SyncRequest {
        node: NodeInfo {
            name: name.into(),
            ..node()
        },
        statuses,
        events: vec![],
        usage: vec![],
        node_usage: None,
    }
}

fn running(a: &ebb_core::Assignment, addr: &str) -> InstanceStatus {
    InstanceStatus {
        id: a.id.clone(),
        generation: a.generation,
        state: InstanceState::Running,
        pid: Some(1),
        addr: Some(addr.into()),
        ready: true,
        restarts: 0,
        started_ms: Some(0),
        last_exit: None,
        exit_code: None,
        exit_unknown: false,
        reason: None,
    }
}

#[tokio::test]
async fn each_node_calls_with_its_own_credential_and_about_itself_only() {
    let h = start_with(|s| {
        s.set_join_token("the-join-token".into());
        ebb_server::auth::reserve_node_name(s.store(), "local").unwrap();
    })
    .await;
    let admin = Client::new(&h.addr, Some(h.token.clone())).unwrap();
    let joiner = Client::new(&h.addr, Some("the-join-token".into())).unwrap();
    // The join token alone can neither read a node's assignments nor heartbeat as it.
    let refused = joiner
        .assignments("n1", 0, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, ebb_client::ClientError::Unauthorized { message, .. } if message.contains("the join token only joins")),
        "{refused}"
    );
    let refused = joiner.sync(&sync_of("n1", vec![])).await.unwrap_err();
    assert_eq!(refused.status(), Some(401), "{refused}");
    assert!(
        admin.nodes().await.unwrap().is_empty(),
        "nothing registered"
    );
    // It trades for a credential. Until the node first syncs, a join again replaces it (an
    // agent that died before its first heartbeat is not locked out); the first one is revoked.
    let lost = joiner.with_token(joiner.join("n1").await.unwrap().credential);
    let n1 = joiner.with_token(joiner.join("n1").await.unwrap().credential);
    let revoked = lost.sync(&sync_of("n1", vec![])).await.unwrap_err();
    assert_eq!(revoked.status(), Some(401), "{revoked}");
    n1.sync(&sync_of("n1", vec![])).await.unwrap();
    // Once registered, the name cannot be taken with the join token.
    let again = joiner.join("n1").await.unwrap_err();
    assert_eq!(again.status(), Some(409), "{again}");
    assert!(again.to_string().contains("ebb nodes rm n1"), "{again}");
    // Nor can the control plane's own node, which never joins, nor a node registered before
    // credentials existed (a sync with the API token registers one without any).
    let own = joiner.join("local").await.unwrap_err();
    assert_eq!(own.status(), Some(409), "{own}");
    admin.sync(&sync_of("old", vec![])).await.unwrap();
    assert_eq!(joiner.join("old").await.unwrap_err().status(), Some(409));
    // A node cannot move its address once registered: the router dials it there.
    let mut moved = sync_of("n1", vec![]);
    moved.node.address = "127.0.0.9".into();
    let refused = n1.sync(&moved).await.unwrap_err();
    assert_eq!(refused.status(), Some(409), "{refused}");
    assert!(
        refused.to_string().contains("registered at 127.0.0.1"),
        "{refused}"
    );
    let n2 = joiner.with_token(joiner.join("n2").await.unwrap().credential);
    // A wrong token cannot join at all.
    let stranger = Client::new(&h.addr, Some("guess".into())).unwrap();
    assert_eq!(stranger.join("n3").await.unwrap_err().status(), Some(401));
    // n2's credential cannot act as n1; n1's can.
    let as_n1 = n2.sync(&sync_of("n1", vec![])).await.unwrap_err();
    assert_eq!(as_n1.status(), Some(401), "{as_n1}");
    let read_n1 = n2.assignments("n1", 0, Duration::ZERO).await.unwrap_err();
    assert_eq!(read_n1.status(), Some(401), "{read_n1}");
    n1.sync(&sync_of("n1", vec![])).await.unwrap();
    n2.sync(&sync_of("n2", vec![])).await.unwrap();

    // A status whose address is not on the node's advertised address is refused; its own is
    // taken.
    admin.apply(vec![spec("web", 2)]).await.unwrap();
    let on_n1 = eventually_async("an instance on n1", Duration::from_secs(10), async || {
        let resp = n1.sync(&sync_of("n1", vec![])).await.unwrap();
        resp.assignments.into_iter().next()
    })
    .await;
    let addr_of = async |id: &str| {
        let all = admin.instances(Some("web")).await.unwrap();
        all.into_iter().find(|i| i.id == id).and_then(|i| i.addr)
    };
    n1.sync(&sync_of("n1", vec![running(&on_n1, "10.9.9.9:80")]))
        .await
        .unwrap();
    assert_eq!(
        addr_of(&on_n1.id).await,
        None,
        "a foreign address is refused"
    );
    n1.sync(&sync_of("n1", vec![running(&on_n1, "127.0.0.1:4100")]))
        .await
        .unwrap();
    assert_eq!(addr_of(&on_n1.id).await.as_deref(), Some("127.0.0.1:4100"));
}

/// Reports every assignment of the node as running and ready.
async fn report_all_ready(client: &Client) -> Vec<ebb_core::Assignment> {
    let resp = client
        .sync(&SyncRequest {
            node: node(),
            statuses: vec![],
            events: vec![],
            usage: vec![],
            node_usage: None,
        })
        .await
        .unwrap();
    let statuses = resp
        .assignments
        .iter()
        .map(|a| InstanceStatus {
            id: a.id.clone(),
            generation: a.generation,
            state: if a.desired == DesiredState::Run {
                InstanceState::Running
            } else {
                InstanceState::Stopped
            },
            pid: Some(1),
            addr: Some("127.0.0.1:1".into()),
            ready: a.desired == DesiredState::Run,
            restarts: 0,
            started_ms: Some(0),
            last_exit: None,
            exit_code: None,
            exit_unknown: false,
            reason: None,
        })
        .collect();
    client
        .sync(&SyncRequest {
            node: node(),
            statuses,
            events: vec![],
            usage: vec![],
            node_usage: None,
        })
        .await
        .unwrap()
        .assignments
}

#[tokio::test]
async fn the_controller_assigns_scales_rolls_and_stops_through_node_sync() {
    let h = start().await;
    let client = Client::new(&h.addr, Some(h.token.clone())).unwrap();
    report_all_ready(&client).await; // the node joins
    client.apply(vec![spec("web", 3)]).await.unwrap();
    eventually_async("3 ready instances", Duration::from_secs(10), async || {
        report_all_ready(&client).await;
        let v = client.service("web").await.unwrap();
        (v.ready == 3).then_some(())
    })
    .await;

    client.scale("web", &ScaleRequest::count(1)).await.unwrap();
    eventually_async("scale in to 1", Duration::from_secs(10), async || {
        let a = report_all_ready(&client).await;
        (a.len() == 1 && client.service("web").await.unwrap().ready == 1).then_some(())
    })
    .await;

    let mut changed = spec("web", 1);
    changed.command.push("# v2".into());
    let old_version = client.service("web").await.unwrap().version;
    client.apply(vec![changed]).await.unwrap();
    eventually_async(
        "rollout to the new version",
        Duration::from_secs(10),
        async || {
            let a = report_all_ready(&client).await;
            let v = client.service("web").await.unwrap();
            (v.version != old_version && v.ready == 1 && v.outdated == 0 && a.len() == 1)
                .then_some(())
        },
    )
    .await;

    client.stop("web").await.unwrap();
    eventually_async(
        "every instance forgotten",
        Duration::from_secs(10),
        async || {
            let a = report_all_ready(&client).await;
            (a.is_empty() && client.instances(None).await.unwrap().is_empty()).then_some(())
        },
    )
    .await;
    let events = client.events(0, 100, Duration::ZERO).await.unwrap().events;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    for k in [
        "node.joined",
        "service.created",
        "service.scaled",
        "service.updated",
        "service.stopped",
        "instance.stopping",
    ] {
        assert!(kinds.contains(&k), "missing {k} in {kinds:?}");
    }
}
