//! Integration tests: connection.
