//! duo_logger plugin configuration.

use duo_core::config::{ConfigError, parse_json};
use serde::Deserialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogContent {
    #[default]
    Never,
    /// Only when GitLab sends `x-gitlab-enabled-instance-verbose-ai-logs: true`.
    WhenEnabled,
    Always,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggerConfig {
    pub log_content: LogContent,
    pub max_content_bytes: usize,
    pub hash_user_ids: bool,
}

impl Default for LoggerConfig {
    fn default() -> Self {
        Self { log_content: LogContent::Never, max_content_bytes: 8192, hash_user_ids: false }
    }
}

impl LoggerConfig {
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let config: Self = parse_json(bytes)?;
        if config.max_content_bytes > 1 << 20 {
            return Err(ConfigError::new("max_content_bytes", "must be at most 1048576"));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn parses_defaults_and_refuses_unknown_fields() {
        assert_eq!(LoggerConfig::parse(b"").unwrap(), LoggerConfig::default());
        let c = LoggerConfig::parse(br#"{"log_content":"when_enabled","max_content_bytes":100}"#).unwrap();
        assert_eq!(c.log_content, LogContent::WhenEnabled);
        assert!(LoggerConfig::parse(br#"{"log_contents":"always"}"#).unwrap_err().message.contains("log_contents"));
        assert_eq!(LoggerConfig::parse(br#"{"log_content":"sometimes"}"#).unwrap_err().path, "log_content");
    }
}
