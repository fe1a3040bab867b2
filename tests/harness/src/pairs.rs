//! proxy-wasm's pair encoding (header maps, property maps and lists) and property values.
//!
//! The encoding is the one the Rust SDK's `deserialize_map` reads: a little-endian `u32` count,
//! then a `(u32 key length, u32 value length)` per pair, then each key and each value followed by
//! a NUL byte. Envoy uses the same layout for header maps, and for CEL maps and lists returned by
//! `get_property` (a list is a map whose values are empty).

/// Encodes pairs the way the host hands header maps (and CEL maps) to the guest.
pub fn encode_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut size = 4;
    for (k, v) in pairs {
        size += 8 + k.as_ref().len() + 1 + v.as_ref().len() + 1;
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&u32_len(pairs.len()).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&u32_len(k.as_ref().len()).to_le_bytes());
        out.extend_from_slice(&u32_len(v.as_ref().len()).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

fn u32_len(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Decodes the pair encoding; `None` when the bytes are malformed (a guest bug the host reports
/// as `BadArgument`, like Envoy). An empty input is an empty map.
pub fn decode_pairs(bytes: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = read_u32(bytes, 0)? as usize;
    let mut sizes = Vec::with_capacity(count.min(4096));
    for i in 0..count {
        let at = 4usize.checked_add(i.checked_mul(8)?)?;
        sizes.push((
            read_u32(bytes, at)? as usize,
            read_u32(bytes, at + 4)? as usize,
        ));
    }
    let mut p = 4usize.checked_add(count.checked_mul(8)?)?;
    let mut out = Vec::with_capacity(sizes.len());
    for (ks, vs) in sizes {
        let key = bytes.get(p..p.checked_add(ks)?)?.to_vec();
        p = p.checked_add(ks + 1)?;
        let value = bytes.get(p..p.checked_add(vs)?)?.to_vec();
        p = p.checked_add(vs + 1)?;
        out.push((key, value));
    }
    Some(out)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Splits a serialized property path (`part\0part\0part`) into its parts.
pub fn split_path(bytes: &[u8]) -> Vec<String> {
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|b| *b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

/// A property value as Envoy's CEL layer holds it, serialized for the guest like Envoy does:
/// strings and bytes verbatim, integers and doubles as 8 little-endian bytes, booleans as one
/// byte, timestamps and durations as `i64` nanoseconds, maps as pairs of (key, serialized value)
/// and lists as pairs of (serialized element, empty).
#[derive(Clone, Debug, PartialEq)]
pub enum PropValue {
    Str(String),
    Bytes(Vec<u8>),
    Int(i64),
    Uint(u64),
    Double(f64),
    Bool(bool),
    /// A timestamp as nanoseconds since the Unix epoch (e.g. `request.time`).
    TimestampNanos(i64),
    /// A duration in nanoseconds (e.g. `request.duration`).
    DurationNanos(i64),
    Map(Vec<(String, PropValue)>),
    List(Vec<PropValue>),
}

impl PropValue {
    /// The bytes `proxy_get_property` returns for this value.
    pub fn serialize(&self) -> Vec<u8> {
        match self {
            PropValue::Str(s) => s.as_bytes().to_vec(),
            PropValue::Bytes(b) => b.clone(),
            PropValue::Int(i) | PropValue::TimestampNanos(i) | PropValue::DurationNanos(i) => {
                i.to_le_bytes().to_vec()
            }
            PropValue::Uint(u) => u.to_le_bytes().to_vec(),
            PropValue::Double(d) => d.to_le_bytes().to_vec(),
            PropValue::Bool(b) => vec![u8::from(*b)],
            PropValue::Map(entries) => {
                let pairs: Vec<(Vec<u8>, Vec<u8>)> = entries
                    .iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), v.serialize()))
                    .collect();
                encode_pairs(&pairs)
            }
            PropValue::List(items) => {
                let pairs: Vec<(Vec<u8>, Vec<u8>)> =
                    items.iter().map(|v| (v.serialize(), Vec::new())).collect();
                encode_pairs(&pairs)
            }
        }
    }

    /// Builds a map value from string pairs (e.g. a JWT payload's string claims).
    pub fn map_of(entries: &[(&str, PropValue)]) -> PropValue {
        PropValue::Map(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_string(), v.clone()))
                .collect(),
        )
    }

    /// Converts JSON the way Envoy's `Struct` metadata reaches CEL: numbers are doubles, objects
    /// maps, arrays lists, `null` an empty byte string.
    pub fn from_json(value: &serde_json::Value) -> PropValue {
        match value {
            serde_json::Value::Null => PropValue::Bytes(Vec::new()),
            serde_json::Value::Bool(b) => PropValue::Bool(*b),
            serde_json::Value::Number(n) => PropValue::Double(n.as_f64().unwrap_or(0.0)),
            serde_json::Value::String(s) => PropValue::Str(s.clone()),
            serde_json::Value::Array(a) => {
                PropValue::List(a.iter().map(PropValue::from_json).collect())
            }
            serde_json::Value::Object(o) => PropValue::Map(
                o.iter()
                    .map(|(k, v)| (k.clone(), PropValue::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Walks one path segment into a map (by key) or a list (by decimal index), as Envoy's
    /// `getProperty` does after the top-level name.
    pub fn child(&self, part: &str) -> Option<&PropValue> {
        match self {
            PropValue::Map(entries) => entries.iter().find(|(k, _)| k == part).map(|(_, v)| v),
            PropValue::List(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
    }

    /// Sets `path` below this value, turning missing or scalar levels into maps.
    pub(crate) fn insert(&mut self, path: &[String], value: PropValue) {
        let Some((first, rest)) = path.split_first() else {
            *self = value;
            return;
        };
        if !matches!(self, PropValue::Map(_)) {
            *self = PropValue::Map(Vec::new());
        }
        if let PropValue::Map(entries) = self {
            if let Some((_, v)) = entries.iter_mut().find(|(k, _)| k == first) {
                v.insert(rest, value);
            } else {
                let mut child = PropValue::Map(Vec::new());
                child.insert(rest, value);
                entries.push((first.clone(), child));
            }
        }
    }
}

impl From<&str> for PropValue {
    fn from(s: &str) -> Self {
        PropValue::Str(s.to_string())
    }
}

impl From<String> for PropValue {
    fn from(s: String) -> Self {
        PropValue::Str(s)
    }
}

impl From<i64> for PropValue {
    fn from(i: i64) -> Self {
        PropValue::Int(i)
    }
}

impl From<bool> for PropValue {
    fn from(b: bool) -> Self {
        PropValue::Bool(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_and_layout() {
        let bytes = encode_pairs(&[(":method", "GET"), ("a", "")]);
        assert_eq!(&bytes[..4], &[2, 0, 0, 0]);
        assert_eq!(&bytes[4..12], &[7, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(&bytes[20..], b":method\0GET\0a\0\0");
        let back = decode_pairs(&bytes).unwrap();
        assert_eq!(
            back,
            vec![
                (b":method".to_vec(), b"GET".to_vec()),
                (b"a".to_vec(), b"".to_vec())
            ]
        );
        assert!(decode_pairs(&bytes[..bytes.len() - 3]).is_none());
        assert_eq!(decode_pairs(b"").unwrap(), vec![]);
    }

    #[test]
    fn property_values_serialize_like_envoy() {
        assert_eq!(PropValue::Int(5).serialize(), 5i64.to_le_bytes());
        assert_eq!(PropValue::Bool(true).serialize(), vec![1]);
        let list = PropValue::List(vec!["a".into(), "bc".into()]).serialize();
        assert_eq!(
            decode_pairs(&list).unwrap(),
            vec![(b"a".to_vec(), vec![]), (b"bc".to_vec(), vec![])]
        );
        let json = serde_json::json!({"sub": "u1", "n": 2});
        let v = PropValue::from_json(&json);
        assert_eq!(v.child("sub"), Some(&PropValue::Str("u1".into())));
        assert_eq!(v.child("n"), Some(&PropValue::Double(2.0)));
        let mut root = PropValue::Map(vec![]);
        root.insert(&["a".into(), "b".into()], "x".into());
        assert_eq!(
            root.child("a").and_then(|a| a.child("b")),
            Some(&PropValue::Str("x".into()))
        );
    }
}
