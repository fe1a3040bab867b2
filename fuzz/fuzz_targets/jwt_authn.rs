//! Envoy jwt_authn's verdict as duo_auth reads it from dynamic metadata: proxy-wasm's pair
//! encoding of the payload map, string lists, numbers, and the failure message.
#![no_main]

use duo_auth::jwt_authn;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(pairs) = jwt_authn::decode_pairs(data) {
        // decode_pairs accepts exactly what encode_pairs writes: decoding is lossless.
        assert_eq!(jwt_authn::encode_pairs(&pairs), data);
    }
    let _ = jwt_authn::claims_from_payload_map(data);
    let _ = jwt_authn::string_list(data);
    if let Some(n) = jwt_authn::number(data)
        && data.len() == 8
    {
        // A protobuf number leaf becomes a usable time or nothing.
        assert!(n.is_finite() && n >= 0.0, "time leaf {n}");
    }
    // Every failure message the namespace holds, combined into one verdict (never a panic,
    // and a namespace with no failure message is no failure).
    let messages = jwt_authn::failure_messages(data);
    let verdict = jwt_authn::combine_failures(Ok(()), messages.iter().copied());
    if messages.is_empty() {
        assert!(verdict.is_none(), "no failure message, yet a failure");
    }
    let text = String::from_utf8_lossy(data);
    // A bad signature reported by any provider is refused, whatever another one said.
    let with_bad_signature = jwt_authn::combine_failures(Ok(()), [text.as_ref(), "Jwt verification fails"]);
    assert!(matches!(with_bad_signature, Some(jwt_authn::Failed::Refuse(_))), "a bad signature must be refused");
    // The leaf-by-leaf reader over the same bytes as every leaf.
    let _ = jwt_authn::claims_from_metadata(|_| Some(data));
});
