//! Integration tests: poller.
