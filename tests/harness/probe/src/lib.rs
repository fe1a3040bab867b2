//! Probe filter for the harness's own tests. Its configuration is `name=<n>` (plus optional
//! words `fail`, `queue`, `root-callout`); each request names what the probe does in header
//! `x-probe-<n>`, a comma-separated list of ops (see `docs/harness.md`).

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { name: String::new(), words: Vec::new(), queue: None }) });
}}

struct Root {
    name: String,
    words: Vec<String>,
    queue: Option<u32>,
}

fn bump_shared(key: &str) {
    for _ in 0..5 {
        let (value, cas) = hostcalls::get_shared_data(key).unwrap_or((None, None));
        let n: u64 = value
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if hostcalls::set_shared_data(key, Some((n + 1).to_string().as_bytes()), cas).is_ok() {
            return;
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        num_headers: usize,
        body_size: usize,
        _t: usize,
    ) {
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten();
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten();
        let text = format!(
            "{num_headers}:{}:{}",
            status.unwrap_or_default(),
            String::from_utf8_lossy(&body.unwrap_or_default())
        );
        let _ = hostcalls::set_shared_data("probe_root_call", Some(text.as_bytes()), None);
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        log::info!("probe vm start");
        true
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let config = String::from_utf8_lossy(&config).into_owned();
        self.words = config.split_whitespace().map(str::to_string).collect();
        self.name = self
            .words
            .iter()
            .find_map(|w| w.strip_prefix("name="))
            .unwrap_or("p")
            .to_string();
        if self.words.iter().any(|w| w == "fail") {
            log::error!("probe: refusing config `{config}`");
            return false;
        }
        if self.words.iter().any(|w| w == "queue") {
            self.queue = hostcalls::register_shared_queue("probe_q").ok();
        }
        let _ = hostcalls::set_tick_period(Duration::from_millis(1000));
        true
    }

    fn on_tick(&mut self) {
        bump_shared("probe_ticks");
        if self.words.iter().any(|w| w == "root-callout") {
            let headers = vec![
                (":method", "GET"),
                (":path", "/keys"),
                (":authority", "keys.local"),
            ];
            let _ = hostcalls::dispatch_http_call(
                "keys",
                headers,
                None,
                vec![],
                Duration::from_secs(3),
            );
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        if let Ok(Some(item)) = hostcalls::dequeue_shared_queue(queue_id) {
            let _ = hostcalls::set_shared_data("probe_q_last", Some(&item), None);
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe {
            id: context_id,
            name: self.name.clone(),
            ops: Vec::new(),
        }))
    }
}

struct Probe {
    id: u32,
    name: String,
    ops: Vec<String>,
}

impl Probe {
    fn has(&self, op: &str) -> bool {
        self.ops.iter().any(|o| o == op)
    }
    fn prop(path: Vec<&str>) -> String {
        hostcalls::get_property(path)
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|| "-".into())
    }
    fn reply(&self, status: u32, why: &str) {
        let body = format!("{why} by {}", self.name);
        let _ = hostcalls::send_http_response(
            status,
            vec![("x-probe", self.name.as_str())],
            Some(body.as_bytes()),
        );
    }
}

impl Context for Probe {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        num_headers: usize,
        body_size: usize,
        _t: usize,
    ) {
        if num_headers == 0 {
            self.reply(503, "callout failed");
            return;
        }
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .unwrap_or_default();
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        if status == "200" {
            let _ = hostcalls::set_map_value(
                MapType::HttpRequestHeaders,
                "x-callout",
                Some(&String::from_utf8_lossy(&body)),
            );
            let _ = hostcalls::resume_http_request();
        } else {
            self.reply(401, &format!("callout said {status}"));
        }
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _num: usize, _eos: bool) -> Action {
        let header = format!("x-probe-{}", self.name);
        let ops = hostcalls::get_map_value(MapType::HttpRequestHeaders, &header)
            .ok()
            .flatten()
            .unwrap_or_default();
        self.ops = ops
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let n = self.name.clone();
        if self.has("mutate") {
            let _ =
                hostcalls::add_map_value(MapType::HttpRequestHeaders, &format!("x-added-{n}"), "1");
            let _ =
                hostcalls::set_map_value(MapType::HttpRequestHeaders, ":path", Some("/rewritten"));
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, "x-remove", None);
        }
        if self.has("state") {
            let _ = hostcalls::set_property(
                vec![&format!("probe_{n}")],
                Some(format!("set-by-{n}").as_bytes()),
            );
            let seen = format!(
                "{}|{}",
                Self::prop(vec!["probe_a"]),
                Self::prop(vec!["filter_state", "wasm.probe_a"])
            );
            let _ = hostcalls::set_map_value(
                MapType::HttpRequestHeaders,
                &format!("x-saw-{n}"),
                Some(&seen),
            );
        }
        if self.has("props") {
            let v = format!(
                "{}|{}|{}|{}",
                Self::prop(vec!["request", "path"]),
                Self::prop(vec![
                    "metadata",
                    "filter_metadata",
                    "envoy.filters.http.jwt_authn",
                    "duo_jwt_payload",
                    "sub"
                ]),
                Self::prop(vec!["plugin_name"]),
                Self::prop(vec!["node", "id"]),
            );
            let _ = hostcalls::set_map_value(
                MapType::HttpRequestHeaders,
                &format!("x-props-{n}"),
                Some(&v),
            );
        }
        if self.has("metric") {
            if let Ok(c) = hostcalls::define_metric(MetricType::Counter, "probe.requests") {
                let _ = hostcalls::increment_metric(c, 1);
            }
            if let Ok(g) = hostcalls::define_metric(MetricType::Gauge, "probe.gauge") {
                let _ = hostcalls::record_metric(g, 7);
            }
        }
        if self.has("shared") {
            bump_shared("probe_counter");
        }
        if self.has("route") {
            let _ = hostcalls::call_foreign_function("clear_route_cache", None);
        }
        if self.has("bad-read") {
            // The SDK panics on BadArgument here: response headers do not exist yet.
            let _ = hostcalls::get_map_value(MapType::HttpResponseHeaders, "x");
        }
        if self.has("reset") {
            let _ = hostcalls::reset_http_request();
            return Action::Pause;
        }
        if self.has("reply") {
            self.reply(403, "denied");
            return Action::Pause;
        }
        if self.has("callout") {
            let headers = vec![
                (":method", "POST"),
                (":path", "/check"),
                (":authority", "svc.local"),
            ];
            return match hostcalls::dispatch_http_call(
                "svc",
                headers,
                Some(b"ping"),
                vec![],
                Duration::from_millis(2000),
            ) {
                Ok(_) => Action::Pause,
                Err(e) => {
                    self.reply(500, &format!("dispatch {e:?}"));
                    Action::Pause
                }
            };
        }
        if self.has("pause") {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        let n = self.name.clone();
        let _ = hostcalls::set_property(
            vec![&format!("probe_{n}_body_calls")],
            Some(format!("{size}:{eos}").as_bytes()),
        );
        if self.has("buffer") || self.has("body-reply") {
            if !eos {
                return Action::Pause;
            }
            if self.has("body-reply") {
                self.reply(413, "too large");
                return Action::Pause;
            }
            let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
                .ok()
                .flatten()
                .unwrap_or_default();
            let upper = String::from_utf8_lossy(&body).to_uppercase();
            let _ = hostcalls::set_buffer(BufferType::HttpRequestBody, 0, size, upper.as_bytes());
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num: usize, _eos: bool) -> Action {
        let n = self.name.clone();
        if self.has("resp-mutate") {
            let order = hostcalls::get_map_value(MapType::HttpResponseHeaders, "x-order")
                .ok()
                .flatten()
                .unwrap_or_default();
            let _ = hostcalls::set_map_value(
                MapType::HttpResponseHeaders,
                "x-order",
                Some(&format!("{order}{n}")),
            );
        }
        if self.has("late-read") {
            // After resume_http_request Envoy forgets this context's request headers: the pairs
            // come back empty (and get_map_value would get BadArgument, which the SDK panics on).
            let r = hostcalls::get_map(MapType::HttpRequestHeaders).map(|m| m.len());
            let _ = hostcalls::set_map_value(
                MapType::HttpResponseHeaders,
                "x-late-read",
                Some(&format!("{r:?}")),
            );
        }
        if self.has("resp-reply") {
            self.reply(500, "response rejected");
            return Action::Pause;
        }
        if self.has("resp-pause") || self.has("resp-buffer") {
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, "content-length", None);
            return if self.has("resp-pause") {
                Action::Pause
            } else {
                Action::Continue
            };
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        if self.has("resp-late-reply") {
            self.reply(500, "late");
            return Action::Pause;
        }
        if self.has("resp-buffer") {
            if !eos {
                return Action::Pause;
            }
            let body = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size)
                .ok()
                .flatten()
                .unwrap_or_default();
            let upper = String::from_utf8_lossy(&body).to_uppercase();
            let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, upper.as_bytes());
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let code = hostcalls::get_property(vec!["response", "code"])
            .ok()
            .flatten()
            .and_then(|b| b.try_into().ok())
            .map(i64::from_le_bytes);
        let path = hostcalls::get_map_value(MapType::HttpRequestHeaders, ":path")
            .ok()
            .flatten();
        let missing = hostcalls::get_map_value(MapType::HttpResponseHeaders, "x-none");
        let record = format!(
            "id={} code={code:?} path={path:?} missing={missing:?}",
            self.id
        );
        let _ =
            hostcalls::set_property(vec![&format!("log_{}", self.name)], Some(record.as_bytes()));
    }
}
