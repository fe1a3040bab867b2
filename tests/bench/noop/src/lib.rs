//! The bench's floor: a proxy-wasm HTTP filter that does nothing, built like ours (same SDK, same
//! profile). Three of these plus `jwt_authn` is the chain shape with none of our work in it, so the
//! report can tell the cost of being a wasm filter in Envoy from the cost of what our filters do.
//!
//! Its plugin configuration, when not empty, prices one host call (docs/bench.md, "Profiling"):
//! `N` reads one request header N times per request, `meta:N` reads one `jwt_authn` payload
//! claim N times, `payload:N` reads the whole `jwt_authn` payload map N times, `pairs:N` reads
//! the whole request-header map N times, `setpairs:N` writes the map as read back whole N times,
//! `replace:N` sets one header N times, `remove:N` removes one (absent) header N times.

#[cfg(target_os = "wasi")]
mod filter {
    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, MapType};

    /// What the bench's request carries and GitLab always sends; never read by the upstream.
    const HEADER: &str = "x-gitlab-instance-id";

    #[derive(Default, Clone, Copy)]
    enum Read {
        #[default]
        Header,
        Claim,
        Payload,
        Pairs,
        SetPairs,
        Replace,
        Remove,
    }

    #[derive(Default)]
    struct Noop {
        read: Read,
        reads: u32,
    }

    const PAYLOAD: [&str; 4] = ["metadata", "filter_metadata", "envoy.filters.http.jwt_authn", "duo_jwt_payload"];
    impl Context for Noop {}
    impl HttpContext for Noop {
        fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
            // The SDK panics on a refused write: in this module a crash is a visible bench failure.
            let map = match self.read {
                Read::SetPairs => hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default(),
                _ => Vec::new(),
            };
            for _ in 0..self.reads {
                match self.read {
                    Read::Header => {
                        let _ = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, HEADER);
                    }
                    Read::Claim => {
                        let _ = hostcalls::get_property([&PAYLOAD[..], &["gitlab_instance_id"]].concat());
                    }
                    Read::Payload => {
                        let _ = hostcalls::get_property(PAYLOAD.to_vec());
                    }
                    Read::Pairs => {
                        let _ = hostcalls::get_map_bytes(MapType::HttpRequestHeaders);
                    }
                    Read::SetPairs => {
                        let pairs: Vec<(&str, &[u8])> = map.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
                        let _ = hostcalls::set_map_bytes(MapType::HttpRequestHeaders, pairs);
                    }
                    Read::Replace => {
                        let _ = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, "x-duo-bench", Some(b"1"));
                    }
                    Read::Remove => {
                        let _ = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, "x-duo-bench-absent", None);
                    }
                }
            }
            Action::Continue
        }
    }
    impl RootContext for Noop {
        fn on_configure(&mut self, _size: usize) -> bool {
            let config = hostcalls::get_buffer(proxy_wasm::types::BufferType::PluginConfiguration, 0, usize::MAX);
            let text = config.ok().flatten().and_then(|b| String::from_utf8(b).ok()).unwrap_or_default();
            let (read, count) = match text.trim().split_once(':') {
                Some(("meta", n)) => (Read::Claim, n),
                Some(("payload", n)) => (Read::Payload, n),
                Some(("pairs", n)) => (Read::Pairs, n),
                Some(("setpairs", n)) => (Read::SetPairs, n),
                Some(("replace", n)) => (Read::Replace, n),
                Some(("remove", n)) => (Read::Remove, n),
                _ => (Read::Header, text.trim()),
            };
            self.read = read;
            self.reads = count.parse().unwrap_or(0);
            true
        }
        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Noop { read: self.read, reads: self.reads }))
        }
    }

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Noop::default()) });
    }}
}
