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

/// `POST /v1/traffic`: what one server's load balancers counted, sent to the leader several
/// times a second, so that the leader's autoscaler decides on the load through every server
/// and not its own alone. Counters are cumulative: a lost report loses no request, the next
/// one covers the gap.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficReport {
    /// The sending server's name.
    pub server: String,
    /// Chosen at random when the sender starts: its counters start again from zero.
    pub incarnation: u64,
    /// When the counters were read, in milliseconds of the sender's monotonic clock since it
    /// started; the leader takes differences of these, never compares them with its own clock.
    pub at_ms: u64,
    /// Each routed service's counters.
    pub services: Vec<RouterCounters>,
}

/// One service's load-balancer counters since its listener was made.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouterCounters {
    /// The service's name.
    pub service: String,
    /// Which counters these are: a rebuilt listener has new ones, which start from zero.
    pub series: u64,
    /// Responses by class, 1xx to 5xx.
    pub responses: [u64; 5],
    /// Time to the response head as `[bucket, count]` pairs of the router's latency
    /// histogram, only the non-empty buckets.
    pub latency: Vec<[u64; 2]>,
    /// Request-nanoseconds in flight since the counters were made.
    pub busy_ns: i64,
    /// Requests in flight when read.
    pub in_flight: u32,
    /// Requests waiting now for a first ready instance.
    pub queued: u32,
    /// Attempts that could not connect.
    pub connect_errors: u64,
    /// Attempts retried on another instance.
    pub retries: u64,
    /// Outlier ejections.
    pub ejections: u64,
}

/// The answer to a [`TrafficReport`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficAck {
    /// Whether the server that took the report leads: if not, the sender looks up the leader
    /// again.
    pub leading: bool,
}
