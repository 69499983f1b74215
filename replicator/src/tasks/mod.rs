//! Replication tasks: what they are (`spec`: specs, validation, rate limits), the
//! versioned catalog every region shares (`catalog`), and the task set as the rest of the
//! node sees it (`book`).

pub mod book;
pub mod catalog;
pub mod spec;

pub use book::TaskBook;
pub use catalog::{ChangeError, TaskRecord};
pub use spec::{Direction, Dr, Start, Task, TaskError, TaskSpec, TaskState};
