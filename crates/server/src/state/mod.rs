//! What the control plane knows and keeps: the store's key layout and typed records
//! ([`keys`]), the event log ([`events`]), node liveness ([`nodes`]), the agents' log channel
//! ([`log_relay`]), each node's assignments as agents read them ([`placed`]), the instances'
//! last reported statuses ([`statuses`]), the servers seen in etcd's registry
//! ([`servers`]), and the counters only Prometheus reads ([`telemetry`]).

pub mod events;
pub mod history;
pub mod keys;
pub mod log_relay;
pub mod nodes;
pub mod placed;
pub mod servers;
pub mod statuses;
pub mod telemetry;
