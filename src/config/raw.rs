//! The TOML file as serde structs (stub).
