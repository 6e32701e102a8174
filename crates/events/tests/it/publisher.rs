//! Integration tests: publisher.
