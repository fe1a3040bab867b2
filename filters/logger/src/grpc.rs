//! What the logger knows about a gRPC call (the Agent Platform): its method, the messages each
//! way (counted from their 5-byte length prefixes, without reading the payloads), and the model
//! GitLab named in `x-gitlab-agent-platform-model-metadata` (never its `api_key`).

/// GitLab's model-metadata header on Agent Platform calls (JSON).
pub const MODEL_METADATA_HEADER: &str = "x-gitlab-agent-platform-model-metadata";
/// Metadata longer than this is not parsed (the router refuses it; GitLab's is < 1 KiB).
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Longest value kept from the metadata.
const MAX_VALUE_BYTES: usize = 256;

/// `DuoWorkflow/ExecuteWorkflow` from `/DuoWorkflow/ExecuteWorkflow` (query ignored): the
/// service and method of a gRPC path, `None` for anything else.
pub fn method_of(path: &str) -> Option<&str> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    let ok = |s: &str| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    (ok(service) && ok(method)).then_some(rest)
}

/// Whether a path is one the gateway serves as gRPC (Agent Platform or gRPC health).
pub fn is_grpc_path(path: &str) -> bool {
    method_of(path).is_some_and(|m| {
        let service = m.split('/').next().unwrap_or_default();
        service == "grpc.health.v1.Health" || service.rsplit('.').next() == Some("DuoWorkflow")
    })
}

/// Counts gRPC messages in a stream of body chunks. Each message is a 5-byte prefix (a flag and a
/// big-endian length) and that many payload bytes; only the prefixes are read, so the cost per
/// message does not grow with its size. A message counts once its prefix is complete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrameCounter {
    /// Payload bytes of the current message still to skip.
    remaining: u64,
    prefix: [u8; 5],
    prefix_len: usize,
    pub messages: u64,
    /// A chunk could not be read: later counts would be wrong, so counting stops.
    pub lost: bool,
}

impl FrameCounter {
    /// Feeds one chunk of `len` bytes; `read(offset, n)` returns `n` bytes of the chunk from
    /// `offset` (only prefix bytes are asked for).
    pub fn feed(&mut self, len: usize, mut read: impl FnMut(usize, usize) -> Option<Vec<u8>>) {
        let mut pos = 0usize;
        while pos < len && !self.lost {
            if self.remaining > 0 {
                let step = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(len - pos);
                pos += step;
                self.remaining -= step as u64;
                continue;
            }
            let n = (5 - self.prefix_len).min(len - pos);
            let Some(bytes) = read(pos, n).filter(|b| b.len() == n) else {
                self.lost = true;
                return;
            };
            self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&bytes);
            self.prefix_len += n;
            pos += n;
            if self.prefix_len == 5 {
                self.messages += 1;
                self.remaining = u64::from(u32::from_be_bytes([self.prefix[1], self.prefix[2], self.prefix[3], self.prefix[4]]));
                self.prefix_len = 0;
            }
        }
    }

    /// Feeds a chunk held in memory.
    pub fn feed_bytes(&mut self, chunk: &[u8]) {
        self.feed(chunk.len(), |off, n| chunk.get(off..off + n).map(<[u8]>::to_vec));
    }
}

/// The model GitLab named for an Agent Platform call. `api_key` is never read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelMetadata {
    pub provider: Option<String>,
    pub name: Option<String>,
    pub identifier: Option<String>,
    pub feature_setting: Option<String>,
}

impl ModelMetadata {
    /// Parses the header; `None` when it is absent, too long or not a JSON object.
    pub fn parse(value: &str) -> Option<ModelMetadata> {
        if value.len() > MAX_METADATA_BYTES {
            return None;
        }
        let serde_json::Value::Object(mut raw) = serde_json::from_str(value).ok()? else { return None };
        let mut text = |key: &str| match raw.remove(key) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => {
                let mut end = s.len().min(MAX_VALUE_BYTES);
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                Some(s[..end].to_owned())
            }
            _ => None,
        };
        Some(ModelMetadata {
            provider: text("provider"),
            name: text("name"),
            identifier: text("identifier"),
            feature_setting: text("feature_setting"),
        })
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8];
        out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn methods_and_grpc_paths() {
        assert_eq!(method_of("/DuoWorkflow/ExecuteWorkflow"), Some("DuoWorkflow/ExecuteWorkflow"));
        assert_eq!(method_of("/grpc.health.v1.Health/Check?x=1"), Some("grpc.health.v1.Health/Check"));
        for bad in ["/", "/DuoWorkflow", "/DuoWorkflow/", "/a/b/c", "/v2/code/completions", "DuoWorkflow/X", "/a b/c"] {
            assert_eq!(method_of(bad), None, "{bad}");
        }
        assert!(is_grpc_path("/DuoWorkflow/GenerateToken"));
        assert!(is_grpc_path("/grpc.health.v1.Health/Watch"));
        assert!(is_grpc_path("/pkg.DuoWorkflow/ListTools"));
        assert!(!is_grpc_path("/v1/prompts/generate_commit_message"));
    }

    #[test]
    fn counts_messages_however_the_stream_is_cut() {
        let mut stream = Vec::new();
        for payload in [&b""[..], b"a", &[7u8; 300][..], b"hello", &[0u8; 70_000][..]] {
            stream.extend(frame(payload));
        }
        for cut in [1, 2, 3, 4, 5, 6, 7, 64, 1000, stream.len()] {
            let mut c = FrameCounter::default();
            for chunk in stream.chunks(cut) {
                c.feed_bytes(chunk);
            }
            assert_eq!((c.messages, c.lost), (5, false), "chunks of {cut}");
        }
    }

    #[test]
    fn reads_only_prefixes() {
        let stream = frame(&[1u8; 10_000]);
        let mut asked = 0usize;
        let mut c = FrameCounter::default();
        c.feed(stream.len(), |off, n| {
            asked += n;
            stream.get(off..off + n).map(<[u8]>::to_vec)
        });
        assert_eq!((c.messages, asked), (1, 5));
    }

    #[test]
    fn an_unreadable_chunk_stops_counting() {
        let mut c = FrameCounter::default();
        c.feed(10, |_, _| None);
        assert!(c.lost);
        c.feed_bytes(&frame(b"x"));
        assert_eq!(c.messages, 0);
    }

    #[test]
    fn metadata_keeps_the_model_and_never_the_key() {
        let m = ModelMetadata::parse(
            r#"{"provider":"custom_openai","name":"mistral","endpoint":"http://vllm:8000/v1","api_key":"sk-secret","identifier":"custom_openai/Mistral-7B","feature_setting":"duo_agent_platform_agentic_chat"}"#,
        )
        .unwrap();
        assert_eq!(m.provider.as_deref(), Some("custom_openai"));
        assert_eq!(m.name.as_deref(), Some("mistral"));
        assert_eq!(m.identifier.as_deref(), Some("custom_openai/Mistral-7B"));
        assert_eq!(m.feature_setting.as_deref(), Some("duo_agent_platform_agentic_chat"));
        assert!(!format!("{m:?}").contains("sk-secret"));
        assert_eq!(ModelMetadata::parse("not json"), None);
        assert_eq!(ModelMetadata::parse("[1]"), None);
        assert_eq!(ModelMetadata::parse(&format!(r#"{{"name":"{}"}}"#, "x".repeat(MAX_METADATA_BYTES))), None);
        assert_eq!(ModelMetadata::parse(r#"{"name": 5, "identifier": ""}"#), Some(ModelMetadata::default()));
    }
}
