//! Validation of the raw config into [`super::Config`] (stub).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration")]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

pub fn parse_str(_text: &str) -> Result<super::Config, ConfigError> {
    Err(ConfigError { problems: vec![] })
}

pub fn load(_path: &std::path::Path) -> Result<super::Config, ConfigError> {
    Err(ConfigError { problems: vec![] })
}
