//! Configuration checks shared by the filters, so an admin's cluster name or authority is judged
//! by one rule whichever filter reads it. Each check returns a [`ConfigError`] carrying the field
//! path the caller passes.

use crate::config::ConfigError;
use std::net::Ipv6Addr;

/// A cluster or model name: non-empty, no whitespace or control characters.
pub fn check_name(path: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::new(path, format!("`{value}` must be a non-empty name without spaces")));
    }
    Ok(())
}

/// Longest [`check_key`] name.
const MAX_KEY_LEN: usize = 64;

/// A name that becomes part of a shared-data key or a log line: 1-64 characters of
/// `[A-Za-z0-9_.-]`.
pub fn check_key(path: &str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_KEY_LEN
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        return Err(ConfigError::new(path, format!("`{value}` must be 1-{MAX_KEY_LEN} characters of [A-Za-z0-9_.-]")));
    }
    Ok(())
}

/// `host[:port]`, as sent in `:authority`: no scheme, no path, no userinfo; the host a DNS
/// name or IPv4 address (letters, digits, `-`, `.`, `_`) or an IPv6 address in brackets; the
/// port, when present, 1-65535 in digits.
pub fn check_authority(path: &str, value: &str) -> Result<(), ConfigError> {
    if authority_ok(value) {
        Ok(())
    } else {
        Err(ConfigError::new(path, format!("`{value}` must be host[:port] (no scheme, no path)")))
    }
}

fn authority_ok(value: &str) -> bool {
    let (host, port) = split_host_port(value);
    let host_ok = match host.strip_prefix('[') {
        // split_host_port keeps the brackets and stops at `]`; anything between `]` and the
        // port separator (`[::1]x`) is left in neither part, so the lengths must add up.
        Some(inner) => {
            let consumed = host.len() + port.map_or(0, |p| p.len() + 1);
            consumed == value.len() && inner.strip_suffix(']').is_some_and(|ip| ip.parse::<Ipv6Addr>().is_ok())
        }
        None => !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)),
    };
    let port_ok = match port {
        None => true,
        Some(p) => !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n != 0),
    };
    host_ok && port_ok
}

/// Splits `host:port` / `[v6]:port`; the port is whatever follows the last `:` outside
/// brackets. An unbracketed IPv6 address (two or more colons) is all host.
pub fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((_, tail)) => {
                let host_len = authority.len() - tail.len();
                (authority.get(..host_len).unwrap_or(authority), tail.strip_prefix(':'))
            }
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn names_refuse_empty_spaces_and_controls() {
        assert!(check_name("c", "vllm_codestral").is_ok());
        assert!(check_name("c", "outbound|443||bedrock.amazonaws.com").is_ok());
        assert!(check_name("c", "modèle").is_ok());
        for bad in ["", " ", "a b", "a\tb", "a\u{7}", "a\u{a0}b"] {
            let e = check_name("models.x.cluster", bad).unwrap_err();
            assert_eq!(e.path, "models.x.cluster");
            assert_eq!(e.message, format!("`{bad}` must be a non-empty name without spaces"));
        }
    }

    #[test]
    fn keys_are_short_and_plain() {
        for good in ["gitlab", "customers.gitlab.com", "a-b_c", &"x".repeat(64)] {
            assert!(check_key("k", good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a/b", "é", &"x".repeat(65)] {
            let e = check_key("jwks_sources[0].name", bad).unwrap_err();
            assert_eq!(e.path, "jwks_sources[0].name");
            assert!(e.message.ends_with("must be 1-64 characters of [A-Za-z0-9_.-]"), "{e}");
        }
    }

    #[test]
    fn authorities_are_host_and_port_only() {
        let good = [
            "vllm.internal:8000",
            "cloud.gitlab.com",
            "127.0.0.1:18000",
            "localhost",
            "my_host:1",
            "h:65535",
            "[::1]",
            "[::1]:8000",
            "[2001:db8::5]:443",
        ];
        for a in good {
            assert!(check_authority("a", a).is_ok(), "{a}");
        }
        let bad = [
            "",
            ":80",
            "http://vllm:8000",
            "vllm:8000/v1",
            "vllm?x",
            "vllm#x",
            "user@host",
            "user:pw@host:80",
            "a b",
            "host\n",
            "vllm:99999",
            "vllm:0",
            "vllm:",
            "vllm:+80",
            "vllm:-1",
            "vllm:8o",
            "::1",
            "2001:db8::5:443",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[::1]:0",
            "[]",
            "[not-v6]:80",
            "[127.0.0.1]",
            "héllo",
            "a,b",
        ];
        for a in bad {
            let e = check_authority("vendor.authority", a).unwrap_err();
            assert_eq!(e.path, "vendor.authority", "{a}");
            assert_eq!(e.message, format!("`{a}` must be host[:port] (no scheme, no path)"));
        }
    }

    #[test]
    fn authorities_split_like_urls() {
        assert_eq!(split_host_port("vllm.internal:8000"), ("vllm.internal", Some("8000")));
        assert_eq!(split_host_port("cloud.gitlab.com"), ("cloud.gitlab.com", None));
        assert_eq!(split_host_port("[::1]:8000"), ("[::1]", Some("8000")));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
        assert_eq!(split_host_port("::1"), ("::1", None));
        assert_eq!(split_host_port("[::1"), ("[::1", None));
        assert_eq!(split_host_port("h:"), ("h", Some("")));
    }
}
