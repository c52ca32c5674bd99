//! Normalization of API events into a common record (stub).
pub mod catalog;
