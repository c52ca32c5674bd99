//! Starts a real rsyslogd as a receiver for tests.
