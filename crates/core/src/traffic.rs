//! Traffic metrics as the API reports them (`GET /v1/metrics`, and inside `ebb ps`): what the
//! router measured for a service or an instance over a recent window.

use serde::{Deserialize, Serialize};

/// Requests through the load balancer over a window, for a service or one instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    /// Length of the window these figures cover, in milliseconds.
    pub window_ms: u64,
    /// Responses in the window (TCP: connections closed).
    pub requests: u64,
    /// Requests per second over the window.
    pub rps: f64,
    /// Time-weighted average of requests in flight over the window (TCP: open connections).
    pub concurrency: f64,
    /// Requests in flight now.
    pub in_flight: u32,
    /// Latency to the response head, in milliseconds; None without requests.
    pub p50_ms: Option<f64>,
    /// The 90th percentile of that latency, in milliseconds; None without requests.
    pub p90_ms: Option<f64>,
    /// The 99th percentile of that latency, in milliseconds; None without requests.
    pub p99_ms: Option<f64>,
    /// Responses by status class.
    pub status: StatusCounts,
    /// Attempts that could not connect to an instance.
    pub connect_errors: u64,
    /// Extra attempts on another instance.
    pub retries: u64,
    /// Times an instance was ejected by outlier detection.
    pub ejections: u64,
}

/// Responses by status class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    /// 1xx responses.
    #[serde(rename = "1xx")]
    pub informational: u64,
    /// 2xx responses.
    #[serde(rename = "2xx")]
    pub success: u64,
    /// 3xx responses.
    #[serde(rename = "3xx")]
    pub redirection: u64,
    /// 4xx responses.
    #[serde(rename = "4xx")]
    pub client_error: u64,
    /// 5xx responses.
    #[serde(rename = "5xx")]
    pub server_error: u64,
}

impl StatusCounts {
    /// From counts ordered 1xx to 5xx.
    pub fn from_classes(c: [u64; 5]) -> StatusCounts {
        StatusCounts {
            informational: c[0],
            success: c[1],
            redirection: c[2],
            client_error: c[3],
            server_error: c[4],
        }
    }
}

/// One routed service's traffic (`GET /v1/metrics`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceTraffic {
    /// The service's name.
    pub service: String,
    /// The public port of its load balancer.
    pub port: u16,
    /// What its clients saw: every request, including those that waited or failed.
    #[serde(flatten)]
    pub traffic: Traffic,
    /// Requests waiting now for a first ready instance.
    pub queued: u32,
    /// Its routed instances.
    pub instances: Vec<InstanceTraffic>,
}

/// One instance's share of a service's traffic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceTraffic {
    /// The instance's id.
    pub id: String,
    /// The requests sent to this instance and how it answered them.
    #[serde(flatten)]
    pub traffic: Traffic,
    /// Taken out of rotation by outlier detection right now.
    pub ejected: bool,
}

/// `GET /v1/metrics?window=10s`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricsResponse {
    /// Each routed service, or only the one asked for.
    pub services: Vec<ServiceTraffic>,
}
