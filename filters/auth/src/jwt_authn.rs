//! `verifier: envoy_jwt_authn`: Envoy's `jwt_authn` filter checked signature, time and audience;
//! its verdict is in the stream's dynamic metadata. String leaves arrive as
//! raw bytes, lists and maps in proxy-wasm's pair encoding, numbers as 8-byte little-endian
//! doubles. This module turns those bytes into [`Claims`] or a [`Denial`]; the adapter only reads.

use crate::token::{Audience, Claims, TokenError};

/// Metadata namespace and keys set by the shipped `jwt_authn` providers. Every provider writes
/// its claims under `duo_jwt_payload` when it accepts the token. Failures go under
/// `duo_jwt_failure` or, with several providers, `duo_jwt_failure_<provider>`: jwt_authn keeps
/// only the last write of a key, so one shared failure key would hide the other providers' verdicts.
pub(crate) const NAMESPACE: &str = "envoy.filters.http.jwt_authn";
pub(crate) const PAYLOAD_KEY: &str = "duo_jwt_payload";
pub(crate) const FAILURE_KEY: &str = "duo_jwt_failure";

/// The property path of the whole jwt_authn namespace (every provider's verdict in one read).
pub(crate) const NAMESPACE_PATH: [&str; 3] = ["metadata", "filter_metadata", NAMESPACE];

/// The failure messages of every provider in the namespace map (as one property read returns
/// it): the `message` of each key named `duo_jwt_failure` or `duo_jwt_failure_<provider>`.
pub fn failure_messages(namespace: &[u8]) -> Vec<&str> {
    let Some(pairs) = decode_pairs(namespace) else { return Vec::new() };
    let mut out = Vec::new();
    for (key, value) in pairs {
        let Ok(key) = std::str::from_utf8(key) else { continue };
        if key != FAILURE_KEY && !key.strip_prefix(FAILURE_KEY).is_some_and(|rest| rest.starts_with('_')) {
            continue;
        }
        let message = decode_pairs(value).and_then(|status| status.into_iter().find(|(k, _)| *k == b"message").map(|(_, v)| v));
        if let Some(m) = message.and_then(|m| std::str::from_utf8(m).ok()) {
            out.push(m);
        }
    }
    out
}

/// What the failures of every provider add up to (no provider accepted the token).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failed {
    /// A reason no key can change: answer it.
    Refuse(TokenError),
    /// No provider knows the token's `kid` (or issuer): a key rotation jwt_authn has not seen yet,
    /// or a stranger's token. duo_auth's own keys (with the kid-miss refetch) decide;
    /// `keys_unavailable` when some provider could not fetch its keys either.
    UnknownKid { keys_unavailable: bool },
    /// Every provider failed to fetch its keys.
    KeysUnavailable,
}

/// One provider's failure message, sorted into what it says about the token.
enum Said {
    Token(TokenError),
    /// The token is not this provider's: its `kid` or issuer is unknown here.
    NotMine,
    KeysUnavailable,
}

fn said(message: &str) -> Said {
    let m = message.to_ascii_lowercase();
    if m.contains("jwks") && (m.contains("fetch") || m.contains("remote")) {
        return Said::KeysUnavailable;
    }
    if m.contains("issuer is not configured") {
        return Said::NotMine;
    }
    match failure_error(&m) {
        TokenError::UnknownKid => Said::NotMine,
        e => Said::Token(e),
    }
}

/// How telling a reason is when providers disagree: a bad signature is only ever reported by the
/// provider whose key matched, so it outranks what the others say.
fn specificity(e: TokenError) -> u8 {
    match e {
        TokenError::AlgorithmNotAllowed => 0,
        TokenError::BadSignature => 1,
        TokenError::Expired => 2,
        TokenError::NotYetValid => 3,
        TokenError::WrongAudience => 4,
        TokenError::Malformed => 5,
        TokenError::UnknownKid => 6,
    }
}

/// The verdict when no provider wrote a payload. `header` is duo_auth's own check of the token's
/// header (`token::parse`): a token that is not RS256 (HS256 keyed with the public key, `none`,
/// RS512) or not a JWS at all is refused at once, whatever jwt_authn said about its keys. `None`
/// when there is no failure either (jwt_authn did not run).
pub fn combine_failures<'a>(header: Result<(), TokenError>, messages: impl IntoIterator<Item = &'a str>) -> Option<Failed> {
    let mut any = false;
    let mut best: Option<TokenError> = None;
    let mut not_mine = false;
    let mut keys_unavailable = false;
    for m in messages {
        any = true;
        match said(m) {
            Said::Token(e) => {
                if best.is_none_or(|b| specificity(e) < specificity(b)) {
                    best = Some(e);
                }
            }
            Said::NotMine => not_mine = true,
            Said::KeysUnavailable => keys_unavailable = true,
        }
    }
    if !any {
        return None;
    }
    if let Err(e) = header {
        return Some(Failed::Refuse(e));
    }
    Some(match (best, not_mine) {
        (Some(e), _) => Failed::Refuse(e),
        (None, true) => Failed::UnknownKid { keys_unavailable },
        (None, false) => Failed::KeysUnavailable,
    })
}

/// The property path of a whole metadata key: the payload map is read in one host call, not one
/// call per claim (each metadata lookup costs Envoy a CEL walk: ~2 µs per claim in V8 on the bench
/// machine, against ~7 µs for the whole map).
pub(crate) fn key_path(key: &str) -> [&str; 4] {
    ["metadata", "filter_metadata", NAMESPACE, key]
}

/// The claims in the `duo_jwt_payload` map as one property read returns it (pairs of claim name
/// and serialized leaf, the same bytes a read of that leaf returns). `None` when the bytes are not
/// a map or carry no claim that makes a verdict.
pub fn claims_from_payload_map(bytes: &[u8]) -> Option<Claims> {
    let pairs = decode_pairs(bytes)?;
    claims_from_metadata(|claim| pairs.iter().find(|(k, _)| *k == claim.as_bytes()).map(|(_, v)| *v))
}

pub use duo_core::pairs::{decode_pairs, encode_pairs};

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

/// The token error a (lower-cased) jwt_authn failure message names.
fn failure_error(m: &str) -> TokenError {
    if m.contains("not in the form") || m.contains("invalid json") || m.contains("malformed") || m.contains("missing") {
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
    }
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

    // jwt_verify_lib's status strings, as jwt_authn writes them.
    const EXPIRED: &str = "Jwt is expired";
    const BAD_SIGNATURE: &str = "Jwt verification fails";
    const NO_KEY: &str = "Jwks doesn't have key to match kid or alg from Jwt";
    const FETCH_FAILED: &str = "Jwks remote fetch is failed";
    const OTHER_ISSUER: &str = "Jwt issuer is not configured";

    fn combine(header: Result<(), TokenError>, messages: &[&str]) -> Option<Failed> {
        combine_failures(header, messages.iter().copied())
    }

    #[test]
    fn each_failure_names_its_reason() {
        let one = |m: &str| combine(Ok(()), &[m]);
        assert_eq!(one(EXPIRED), Some(Failed::Refuse(TokenError::Expired)));
        assert_eq!(one("Jwt not yet valid"), Some(Failed::Refuse(TokenError::NotYetValid)));
        assert_eq!(one("Audiences in Jwt are not allowed"), Some(Failed::Refuse(TokenError::WrongAudience)));
        assert_eq!(one(BAD_SIGNATURE), Some(Failed::Refuse(TokenError::BadSignature)));
        assert_eq!(one("Jwt is not in the form of Header.Payload.Signature"), Some(Failed::Refuse(TokenError::Malformed)));
        assert_eq!(one(FETCH_FAILED), Some(Failed::KeysUnavailable));
        assert_eq!(one(NO_KEY), Some(Failed::UnknownKid { keys_unavailable: false }));
        assert_eq!(one(OTHER_ISSUER), Some(Failed::UnknownKid { keys_unavailable: false }));
        assert_eq!(combine(Ok(()), &[]), None, "no verdict at all");
    }

    #[test]
    fn several_providers_give_the_most_specific_reason() {
        // Tampered payload: the provider whose key matched saw the bad signature; the other one
        // only knows no key with that kid. In either order.
        for order in [[BAD_SIGNATURE, NO_KEY], [NO_KEY, BAD_SIGNATURE]] {
            assert_eq!(combine(Ok(()), &order), Some(Failed::Refuse(TokenError::BadSignature)));
        }
        assert_eq!(combine(Ok(()), &[NO_KEY, EXPIRED]), Some(Failed::Refuse(TokenError::Expired)));
        // Algorithm confusion (HS256 with the RSA public key): every provider says "no key for
        // that kid or alg"; duo_auth's header check refuses it at once, no key fetched.
        let hs256 = Err(TokenError::AlgorithmNotAllowed);
        assert_eq!(combine(hs256, &[NO_KEY, NO_KEY]), Some(Failed::Refuse(TokenError::AlgorithmNotAllowed)));
        assert_eq!(combine(Err(TokenError::Malformed), &[FETCH_FAILED]), Some(Failed::Refuse(TokenError::Malformed)));
        // Only unknown kids everywhere: the refetch path.
        assert_eq!(combine(Ok(()), &[NO_KEY, OTHER_ISSUER]), Some(Failed::UnknownKid { keys_unavailable: false }));
        assert_eq!(combine(Ok(()), &[NO_KEY, FETCH_FAILED]), Some(Failed::UnknownKid { keys_unavailable: true }));
        assert_eq!(combine(Ok(()), &[FETCH_FAILED, FETCH_FAILED]), Some(Failed::KeysUnavailable));
    }

    #[test]
    fn failure_messages_of_every_provider_key() {
        let status = |m: &str| encode_pairs(&[(b"code", &16f64.to_le_bytes()), (b"message", m.as_bytes())]);
        let (a, b, c) = (status(BAD_SIGNATURE), status(NO_KEY), status(EXPIRED));
        let payload = str_pairs(&[("sub", "x")]);
        let ns = encode_pairs(&[
            (b"duo_jwt_failure_gitlab", &a),
            (b"duo_jwt_failure_customersdot", &b),
            (b"duo_jwt_failure", &c),
            (b"duo_jwt_failures", &c),
            (b"duo_jwt_payload", &payload),
        ]);
        assert_eq!(failure_messages(&ns), vec![BAD_SIGNATURE, NO_KEY, EXPIRED]);
        assert!(failure_messages(b"junk").is_empty());
    }
}
