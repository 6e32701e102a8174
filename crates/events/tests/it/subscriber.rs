//! Integration tests: subscriber.
