//! Shared types of ebb: the vocabulary every other crate speaks.
//!
//! Nothing here does I/O or reads the clock: times are passed in as unix milliseconds.

pub mod api;
pub mod autoscale;
pub mod constraint;
pub mod event;
pub mod files;
#[doc(hidden)]
pub mod fuzz;
pub mod hash;
pub mod instance;
pub mod job;
pub mod quantity;
pub mod schedule;
pub mod service;
pub mod traffic;

pub use api::NodeState;
pub use autoscale::{
    AutoscaleSpec, Bounds, ForecastMode, ScaleMetric, ScalePolicy, ScaleTargets, ScaleUpLimit,
    ScheduleWindow, StepBand, StepChange, Weekdays,
};
pub use constraint::{Constraint, ConstraintError, Operator};
pub use event::{Event, EventKind};
pub use instance::{Assignment, DesiredState, InstanceState, InstanceStatus};
pub use job::{
    JobEnd, JobProgress, JobRecord, JobSpec, JobState, Parallelism, QueueSpec, TaskRecord, TaskRef,
    TaskState,
};
pub use quantity::{parse_cpu_millis, parse_duration, parse_size, QuantityError};
pub use service::{
    BalanceAlgorithm, BalanceSpec, CertificateFiles, HealthCheck, HealthSpec, Placement, Protocol,
    Resources, ServiceSpec, StopSpec, TlsSpec,
};
