//! Local sandbox clusters for `sandbox up|down`, the demo and the tests.
