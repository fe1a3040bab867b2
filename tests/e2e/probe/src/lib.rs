//! e2e route-cache probe (test-only; see tests/e2e/probe/Cargo.toml).
//!
//! Request headers:
//! - `x-probe-touch-route: 1`: read the `route_name` property first, so Envoy has resolved and
//!   cached the route before the probe changes anything (what duo_logger/duo_auth may do before
//!   duo_router);
//! - `x-probe-cluster: <c>`: set `x-duo-upstream: <c>` in the headers callback;
//! - `x-probe-path: <p>`: rewrite `:path` to `<p>` in the headers callback;
//! - `x-probe-body: 1`: pause in the headers callback and set `x-duo-upstream` to the request body
//!   (trimmed) once the whole body arrived (needs `allow_on_headers_stop_iteration: true`).

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
        Some(Box::new(Probe { body_mode: false }))
    }
}

struct Probe {
    body_mode: bool,
}
impl Context for Probe {}
impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if self.get_http_request_header("x-probe-touch-route").is_some() {
            let route = self.get_property(vec!["route_name"]).unwrap_or_default();
            self.set_http_request_header("x-probe-route-before", Some(&String::from_utf8_lossy(&route)));
        }
        if let Some(cluster) = self.get_http_request_header("x-probe-cluster") {
            self.set_http_request_header("x-duo-upstream", Some(&cluster));
        }
        if let Some(path) = self.get_http_request_header("x-probe-path") {
            self.set_http_request_header(":path", Some(&path));
        }
        if self.get_http_request_header("x-probe-body").is_some() {
            self.body_mode = true;
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        if !self.body_mode {
            return Action::Continue;
        }
        if !eos {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        let cluster = String::from_utf8_lossy(&body).trim().to_string();
        self.set_http_request_header("x-duo-upstream", Some(&cluster));
        Action::Continue
    }
}
