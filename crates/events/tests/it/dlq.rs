//! Integration tests: dlq.
