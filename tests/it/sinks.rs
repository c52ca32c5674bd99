//! Integration tests: sinks.
