//! e2e route-cache probe (test-only; see tests/e2e/probe/Cargo.toml).
//!
//! Request headers:
//! - `x-probe-touch-route: 1`: read the `route_name` property first, so Envoy has resolved and
//!   cached the route before the probe changes anything (what duo_logger/duo_auth may do before
//!   duo_router);
//! - `x-probe-cluster: <c>`: set `x-duo-upstream: <c>` in the headers callback;
//! - `x-probe-path: <p>`: rewrite `:path` to `<p>` in the headers callback;
//! - `x-probe-jwt: 1`: copy what jwt_authn left in the stream's metadata (docs/envoy-facts.md E11) into
//!   request headers for the upstream: `x-probe-jwt-sub` (`duo_jwt_payload.sub`) and
//!   `x-probe-jwt-failure` (`duo_jwt_failure.message`);
//! - `x-probe-crash: 1`: abort (a wasm trap, what a panic becomes under `panic = "abort"`), to
//!   observe the configured `failure_policy` (docs/envoy-facts.md E9);
//! - `x-probe-body: <key>`: pause in the headers callback and, once the whole body arrived, set
//!   `x-duo-upstream` to the string value of `"<key>":"..."` found in the JSON body (needs
//!   `allow_on_headers_stop_iteration: true`, docs/envoy-facts.md E1).

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;
impl Context for Root {}
impl RootContext for Root {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe { body_key: None }))
    }
}

struct Probe {
    body_key: Option<String>,
}
impl Context for Probe {}
impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if self.get_http_request_header("x-probe-crash").is_some() {
            std::process::abort();
        }
        if self.get_http_request_header("x-probe-touch-route").is_some() {
            let route = self.get_property(vec!["route_name"]).unwrap_or_default();
            self.set_http_request_header("x-probe-route-before", Some(&String::from_utf8_lossy(&route)));
        }
        if self.get_http_request_header("x-probe-jwt").is_some() {
            let base = ["metadata", "filter_metadata", "envoy.filters.http.jwt_authn"];
            for (key, leaf, header) in [
                ("duo_jwt_payload", "sub", "x-probe-jwt-sub"),
                ("duo_jwt_failure", "message", "x-probe-jwt-failure"),
            ] {
                let path = vec![base[0], base[1], base[2], key, leaf];
                if let Some(value) = self.get_property(path) {
                    self.set_http_request_header(header, Some(&String::from_utf8_lossy(&value)));
                }
            }
        }
        if let Some(cluster) = self.get_http_request_header("x-probe-cluster") {
            self.set_http_request_header("x-duo-upstream", Some(&cluster));
        }
        if let Some(path) = self.get_http_request_header("x-probe-path") {
            self.set_http_request_header(":path", Some(&path));
        }
        if let Some(key) = self.get_http_request_header("x-probe-body") {
            self.body_key = Some(key);
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        let Some(key) = self.body_key.clone() else {
            return Action::Continue;
        };
        if !eos {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        let needle = format!("\"{key}\"");
        if let Some(at) = text.find(&needle) {
            let rest = text[at + needle.len()..].trim_start().trim_start_matches(':').trim_start();
            if let Some(value) = rest.strip_prefix('"').and_then(|v| v.split('"').next()) {
                self.set_http_request_header("x-duo-upstream", Some(value));
            }
        }
        Action::Continue
    }
}
