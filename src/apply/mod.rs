//! Apply: walk the plan DAG concurrently (lock, journal, events, waits). Never prints.
