//! The bench's floor: a proxy-wasm HTTP filter that does nothing, built like ours (same SDK, same
//! profile). Three of these plus `jwt_authn` is the chain shape with none of our work in it, so the
//! report can tell the cost of being a wasm filter in Envoy from the cost of what our filters do.
//!
//! Its plugin configuration, when not empty, prices one host call (docs/bench.md, "Profiling"):
//! `N` reads one request header N times per request, `meta:N` reads one `jwt_authn` payload
//! claim N times, `payload:N` reads the whole `jwt_authn` payload map N times.

#[cfg(target_os = "wasi")]
mod filter {
    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, MapType};

    #[derive(Default, Clone, Copy)]
    enum Read {
        #[default]
        Header,
        Claim,
        Payload,
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
            for _ in 0..self.reads {
                let _ = match self.read {
                    Read::Header => hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "x-gitlab-instance-id"),
                    Read::Claim => hostcalls::get_property([&PAYLOAD[..], &["gitlab_instance_id"]].concat()),
                    Read::Payload => hostcalls::get_property(PAYLOAD.to_vec()),
                };
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
