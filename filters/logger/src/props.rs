//! Decoding Envoy property values. Envoy serialises integers, durations (nanoseconds) and
//! timestamps (unix nanoseconds) as 8 little-endian bytes; strings as their bytes.

/// An 8-byte little-endian signed integer, or `None` for any other length.
pub fn i64_le(bytes: &[u8]) -> Option<i64> {
    let array: [u8; 8] = bytes.try_into().ok()?;
    Some(i64::from_le_bytes(array))
}

/// A UTF-8 string property; empty counts as absent.
pub(crate) fn text(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().filter(|s| !s.is_empty()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn integers_need_exactly_eight_bytes() {
        assert_eq!(i64_le(&200i64.to_le_bytes()), Some(200));
        assert_eq!(i64_le(&(-5i64).to_le_bytes()), Some(-5));
        assert_eq!(i64_le(&[1, 2, 3]), None);
        assert_eq!(i64_le(&[]), None);
    }

    #[test]
    fn text_is_utf8_and_non_empty() {
        assert_eq!(text(b"via_upstream").as_deref(), Some("via_upstream"));
        assert_eq!(text(b""), None);
        assert_eq!(text(&[0xff, 0xfe]), None);
    }
}
