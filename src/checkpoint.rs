//! Per-source checkpoint files (stub).
