//! Each baseline's status: per-namespace outcomes (`outcomes`), aggregated by a pure function
//! (`compute`) into counts, conditions and a capped drift list, written by a loop (`writer`) only
//! when something changed, so status stays small and quiet.

mod compute;
mod outcomes;
mod writer;

pub use outcomes::{Outcome, Outcomes};
pub use writer::write_statuses;
