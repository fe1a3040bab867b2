//! `verifier: envoy_jwt_authn`: Envoy's `jwt_authn` filter checked signature, time and audience;
//! its verdict is in the stream's dynamic metadata (engineering.md F18). String leaves arrive as
//! raw bytes, lists and maps in proxy-wasm's pair encoding, numbers as 8-byte little-endian
//! doubles. This module turns those bytes into [`Claims`] or a [`Denial`]; the adapter only reads.

use crate::policy::Denial;
use crate::token::{Audience, Claims, TokenError};

/// Metadata namespace and keys set by the shipped `jwt_authn` provider (product.md §3.1).
pub const NAMESPACE: &str = "envoy.filters.http.jwt_authn";
pub const PAYLOAD_KEY: &str = "duo_jwt_payload";
pub const FAILURE_KEY: &str = "duo_jwt_failure";

/// The property path of one leaf under a metadata key.
pub fn property_path<'a>(key: &'a str, leaf: &'a str) -> [&'a str; 5] {
    ["metadata", "filter_metadata", NAMESPACE, key, leaf]
}

/// The property path of a whole metadata key: the payload map is read in one host call, not one
/// call per claim (each metadata lookup costs Envoy a CEL walk: ~2 µs per claim in V8 on the bench
/// machine, against ~7 µs for the whole map).
pub fn key_path(key: &str) -> [&str; 4] {
    ["metadata", "filter_metadata", NAMESPACE, key]
}

/// The claims in the `duo_jwt_payload` map as one property read returns it (pairs of claim name
/// and serialized leaf, the same bytes a read of that leaf returns). `None` when the bytes are not
/// a map or carry no claim that makes a verdict.
pub fn claims_from_payload_map(bytes: &[u8]) -> Option<Claims> {
    let pairs = decode_pairs(bytes)?;
    claims_from_metadata(|claim| pairs.iter().find(|(k, _)| *k == claim.as_bytes()).map(|(_, v)| *v))
}

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

/// The inverse of [`decode_pairs`]: the bytes Envoy returns for a map or list property (for
/// tests and benchmarks that stand in for Envoy).
pub fn encode_pairs(items: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = (items.len() as u32).to_le_bytes().to_vec();
    for (k, v) in items {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in items {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// A list of strings: pair-encoded (each element in the key or value position), or a JSON array,
/// or a single string.
pub fn string_list(bytes: &[u8]) -> Vec<String> {
    if let Some(pairs) = decode_pairs(bytes) {
        let mut out = Vec::new();
        for (k, v) in pairs {
            for part in [k, v] {
                if !part.is_empty()
                    && let Ok(s) = std::str::from_utf8(part) {
                        out.push(s.to_owned());
                    }
            }
        }
        return out;
    }
    if let Ok(list) = serde_json::from_slice::<Vec<String>>(bytes) {
        return list;
    }
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.is_empty() => vec![s.to_owned()],
        _ => Vec::new(),
    }
}

/// A number leaf: an 8-byte little-endian double (protobuf `Struct` numbers), or decimal text.
pub fn number(bytes: &[u8]) -> Option<f64> {
    if let Ok(b) = <[u8; 8]>::try_from(bytes) {
        let d = f64::from_le_bytes(b);
        if d.is_finite() && d >= 0.0 {
            return Some(d);
        }
        let i = i64::from_le_bytes(b);
        return (i >= 0).then_some(i as f64);
    }
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

fn text(bytes: Option<&[u8]>) -> Option<String> {
    bytes.and_then(|b| std::str::from_utf8(b).ok()).map(str::to_owned)
}

/// The claims in `duo_jwt_payload`, read leaf by leaf through `get(claim)`. `None` when there is
/// no payload at all.
pub fn claims_from_metadata<'a>(get: impl Fn(&str) -> Option<&'a [u8]>) -> Option<Claims> {
    let exp = get("exp");
    let sub = get("sub");
    let iss = get("iss");
    if exp.is_none() && sub.is_none() && iss.is_none() {
        return None;
    }
    let aud = get("aud").map(|b| {
        let list = string_list(b);
        if list.len() == 1 && decode_pairs(b).is_none() {
            Audience::One(list.into_iter().next().unwrap_or_default())
        } else {
            Audience::Many(list)
        }
    });
    Some(Claims {
        iss: text(iss),
        sub: text(sub),
        aud,
        exp: exp.and_then(number),
        nbf: get("nbf").and_then(number),
        iat: get("iat").and_then(number),
        jti: text(get("jti")),
        gitlab_realm: text(get("gitlab_realm")),
        gitlab_instance_id: text(get("gitlab_instance_id")),
        scopes: get("scopes").map(string_list).unwrap_or_default(),
    })
}

/// `jwt_authn`'s failure message, as GitLab's 401 plus a specific reason (503 when `jwt_authn`
/// could not fetch the keys).
pub fn failure_denial(message: &str) -> Denial {
    let m = message.to_ascii_lowercase();
    if m.contains("jwks") && (m.contains("fetch") || m.contains("remote")) {
        return Denial::keys_unavailable();
    }
    let e = if m.contains("not in the form") || m.contains("invalid json") || m.contains("malformed") || m.contains("missing") {
        TokenError::Malformed
    } else if m.contains("expired") {
        TokenError::Expired
    } else if m.contains("not yet valid") {
        TokenError::NotYetValid
    } else if m.contains("audience") {
        TokenError::WrongAudience
    } else if m.contains("kid") || m.contains("key id") {
        TokenError::UnknownKid
    } else if m.contains("verification fail") || m.contains("signature") {
        TokenError::BadSignature
    } else if m.contains("alg") {
        TokenError::AlgorithmNotAllowed
    } else {
        TokenError::Malformed
    };
    Denial::token(e)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn str_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
        let bytes: Vec<(&[u8], &[u8])> = pairs.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())).collect();
        encode_pairs(&bytes)
    }

    #[test]
    fn pairs_round_trip_and_reject_garbage() {
        let bytes = str_pairs(&[("complete_code", ""), ("duo_chat", "")]);
        assert_eq!(decode_pairs(&bytes).unwrap().len(), 2);
        assert_eq!(string_list(&bytes), vec!["complete_code", "duo_chat"]);
        assert_eq!(string_list(&str_pairs(&[("0", "a"), ("1", "b")])), vec!["0", "a", "1", "b"]);
        assert!(decode_pairs(b"complete_code").is_none());
        assert!(decode_pairs(&[255, 255, 255, 255]).is_none());
        let mut cut = bytes.clone();
        cut.pop();
        assert!(decode_pairs(&cut).is_none());
        assert_eq!(string_list(b"gitlab-ai-gateway"), vec!["gitlab-ai-gateway"]);
        assert_eq!(string_list(br#"["a","b"]"#), vec!["a", "b"]);
    }

    #[test]
    fn numbers_come_as_doubles_or_text() {
        assert_eq!(number(&1_726_761_600f64.to_le_bytes()), Some(1_726_761_600.0));
        assert_eq!(number(b"1726761600"), Some(1_726_761_600.0));
        assert_eq!(number(b"soon"), None);
    }

    #[test]
    fn claims_are_read_leaf_by_leaf() {
        let exp = 1_726_761_600f64.to_le_bytes();
        let aud = str_pairs(&[("gitlab-ai-gateway", "")]);
        let scopes = str_pairs(&[("complete_code", ""), ("duo_chat", "")]);
        let get = |leaf: &str| -> Option<&[u8]> {
            Some(match leaf {
                "sub" => b"292c",
                "iss" => b"https://gitlab.example.com",
                "exp" => &exp,
                "aud" => &aud,
                "gitlab_realm" => b"self-managed",
                "scopes" => &scopes,
                _ => return None,
            })
        };
        let c = claims_from_metadata(get).unwrap();
        assert_eq!(c.sub.as_deref(), Some("292c"));
        assert_eq!(c.exp, Some(1_726_761_600.0));
        assert!(c.aud.as_ref().unwrap().contains("gitlab-ai-gateway"));
        assert_eq!(c.scopes, vec!["complete_code", "duo_chat"]);
        assert_eq!(c.gitlab_instance_id, None);
        assert_eq!(claims_from_metadata(|_| None), None);
    }

    #[test]
    fn the_whole_payload_map_gives_the_same_claims_as_leaf_reads() {
        let exp = 1_726_761_600f64.to_le_bytes();
        let scopes = str_pairs(&[("complete_code", ""), ("duo_chat", "")]);
        let map = encode_pairs(&[
            (b"sub", b"292c"),
            (b"exp", &exp),
            (b"aud", b"gitlab-ai-gateway"),
            (b"scopes", &scopes),
            (b"gitlab_instance_id", b"inst-1"),
        ]);
        let c = claims_from_payload_map(&map).unwrap();
        assert_eq!(c.sub.as_deref(), Some("292c"));
        assert_eq!(c.exp, Some(1_726_761_600.0));
        assert!(c.aud.as_ref().unwrap().contains("gitlab-ai-gateway"));
        assert_eq!(c.scopes, vec!["complete_code", "duo_chat"]);
        assert_eq!(c.gitlab_instance_id.as_deref(), Some("inst-1"));
        // Not a map, or a map without the claims a verdict needs: no verdict (the filter denies).
        assert_eq!(claims_from_payload_map(b"292c"), None);
        assert_eq!(claims_from_payload_map(&encode_pairs(&[(b"jti", b"x")])), None);
    }

    #[test]
    fn failures_map_to_specific_reasons() {
        assert_eq!(failure_denial("Jwt is expired").reason, "token_expired");
        assert_eq!(failure_denial("Jwt not yet valid").reason, "token_not_yet_valid");
        assert_eq!(failure_denial("Audiences in Jwt are not allowed").reason, "wrong_audience");
        assert_eq!(failure_denial("Jwt verification fails").reason, "bad_signature");
        assert_eq!(failure_denial("Jwks remote fetch is failed").reply.status, 503);
        let d = failure_denial("Jwt is not in the form of Header.Payload.Signature");
        assert_eq!((d.reply.status, d.reason), (401, "malformed_token"));
        assert_eq!(d.reply.body, r#"{"error":"Forbidden by auth provider"}"#);
    }
}
