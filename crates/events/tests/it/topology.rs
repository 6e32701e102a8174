//! Integration tests: topology.
