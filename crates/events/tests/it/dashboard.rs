//! Integration tests: the Grafana dashboard names only exported metrics.
