//! The words of the design (task, subtask, stage, chunk, manifest) as plain types: task names, migration modes, tables, partitions,
//! subtasks, chunks and manifests. Nothing here opens a file, a socket or a database; every
//! other module speaks in these types.

pub mod cancel;
pub mod chunk;
pub mod dialect;
pub mod failure;
pub mod names;
pub mod status;
pub mod subtask;
pub mod task;

pub use cancel::CancelSwitch;
pub use chunk::{ChunkName, ChunkRecord, Compression, LOB_FOLDER, LobRecord, Manifest, lob_file};
pub use dialect::Dialect;
pub use failure::StageFailure;
pub use status::{StageStatus, State, SubtaskStatus, TaskView};
pub use subtask::{
    ColumnSpec, FetchKind, KeyKind, PartitionBound, PartitionSpec, SubtaskSpec, TableRef,
    ValueFamily,
};
pub use task::{Leg, LogLevel, MigrationMode, Role, Sorting, TaskName};
