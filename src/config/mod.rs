//! Configuration as users write it, turned into validated domain types. Defaults live here
//! and nowhere else; `appliance/examples/job.toml` shows every one of them and a test keeps
//! that file in step with the code.

pub mod files;
pub mod job;
mod secret;
pub mod stages;
pub mod task;

pub use files::hostname;
pub use job::{
    DateInterval, FileSettings, Job, JobError, MAX_RANGES, PartitionRequest, Rule, SqlLiteral,
    TableRequest, like,
};
pub use secret::{KEY_BYTES, Secret, TaskKey, constant_time_eq, random_token};
pub use stages::{ChecksumMode, CopyOptions, TargetSettings, WarehouseKind, WarehouseSettings};
pub use task::{Task, TaskDefinition};
