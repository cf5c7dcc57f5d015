//! Desired × Observed → changes. Pure: no IO.
