//! Changes → a DAG of steps, assembled by named ordering transforms (one per rule of SPEC §4).
//! Pure and synchronous: no IO, no printing.

pub mod model;

pub use model::*;
