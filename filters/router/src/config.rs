//! duo_auth configuration (skeleton; the router issue completes it).

use duo_core::config::{ConfigError, parse_json};
use serde::Deserialize;

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub configuration_type: Option<String>,
}

impl Config {
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        parse_json(bytes)
    }
}
