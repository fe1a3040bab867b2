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
    let _ = jwt_authn::failure_denial(&String::from_utf8_lossy(data));
    // The leaf-by-leaf reader over the same bytes as every leaf.
    let _ = jwt_authn::claims_from_metadata(|_| Some(data));
});
