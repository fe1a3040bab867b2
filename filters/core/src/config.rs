//! Shared configuration plumbing: parse JSON with the failing field's path in the message, so
//! `on_configure` can log one line that names the field and Envoy refuses the plugin.

use serde::de::DeserializeOwned;

/// A configuration error that names where it is (`models.codestral.platform: unknown variant ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "invalid configuration: {}", self.message)
        } else {
            write!(f, "invalid configuration at `{}`: {}", self.path, self.message)
        }
    }
}

/// Deserializes JSON; an empty configuration is read as `{}` so every default applies.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        ConfigError::new(path, message)
    })
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(default)]
        inner: Option<Inner>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        port: u16,
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_json::<Outer>(br#"{"inner": {"port": "x"}}"#).unwrap_err();
        assert_eq!(e.path, "inner.port");
        assert!(e.to_string().contains("`inner.port`"), "{e}");
        let e = parse_json::<Outer>(br#"{"innr": {}}"#).unwrap_err();
        assert!(e.message.contains("unknown field `innr`"), "{e}");
        assert!(parse_json::<Outer>(b"  ").unwrap().inner.is_none());
    }
}
