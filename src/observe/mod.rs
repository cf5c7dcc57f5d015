//! Observe the live cluster: every declared node concurrently, SQL through tokio-postgres, files
//! and `pg_controldata` through the node's transport when the server does not answer.
//! It records facts and decides nothing.

pub mod model;

pub use model::*;
