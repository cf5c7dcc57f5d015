//! pgtopo: plan and apply PostgreSQL streaming-replication topologies.
//!
//! Data flows config → observe → diff → plan → render | apply; see ARCHITECTURE.md.

pub mod apply;
pub mod cli;
pub mod config;
pub mod demo;
pub mod diff;
pub mod fleet;
pub mod import;
pub mod observe;
pub mod pg;
pub mod plan;
pub mod pooler;
pub mod render;
pub mod sandbox;
pub mod steps;
pub mod transport;
pub mod units;
pub mod watch;
