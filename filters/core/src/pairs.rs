//! proxy-wasm's pair encoding of header maps and map properties: a little-endian `u32` count,
//! then each key's and value's `u32` length, then each key and value followed by a NUL byte.

/// Decodes proxy-wasm's pair encoding: u32 count, count x (u32 key len, u32 value len), then
/// each key and value followed by a NUL byte. `None` if the bytes are not exactly that. Borrows:
/// a GitLab token's payload has ~40 strings, and copying each was most of this filter's work.
pub fn decode_pairs(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(b) as usize)
    };
    let count = u32_at(0)?;
    if count > bytes.len() / 8 {
        return None;
    }
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        sizes.push((u32_at(4 + i * 8)?, u32_at(8 + i * 8)?));
    }
    let mut at = 4 + count * 8;
    let mut out = Vec::with_capacity(count);
    for (k, v) in sizes {
        let key = bytes.get(at..at + k)?;
        if bytes.get(at + k) != Some(&0) {
            return None;
        }
        at += k + 1;
        let value = bytes.get(at..at + v)?;
        if bytes.get(at + v) != Some(&0) {
            return None;
        }
        at += v + 1;
        out.push((key, value));
    }
    (at == bytes.len()).then_some(out)
}

/// The inverse of [`decode_pairs`]: what the host reads for a header-map write, and what Envoy
/// returns for a map property (tests and fuzz targets stand in for Envoy with it).
pub fn encode_pairs(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let size = 4 + pairs.iter().map(|(k, v)| k.len() + v.len() + 10).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&len32(pairs.len()));
    for (k, v) in pairs {
        out.extend_from_slice(&len32(k.len()));
        out.extend_from_slice(&len32(v.len()));
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_encode_as_the_abi_reads_them_and_decode_back() {
        let encoded = encode_pairs(&[(b"ab", b"x"), (b"c", b"")]);
        let want: Vec<u8> = [&2u32.to_le_bytes()[..], &2u32.to_le_bytes(), &1u32.to_le_bytes(), &1u32.to_le_bytes(), &0u32.to_le_bytes(), b"ab\0x\0c\0\0"].concat();
        assert_eq!(encoded, want);
        assert_eq!(decode_pairs(&encoded), Some(vec![(&b"ab"[..], &b"x"[..]), (&b"c"[..], &b""[..])]));
        assert_eq!(encode_pairs(&[]), 0u32.to_le_bytes());
    }
}
