//! proxy-wasm adapter for duo_logger (placeholder until the logger issue: loads and configures).

use crate::config::LoggerConfig;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(LoggerRoot { config: Rc::new(LoggerConfig::default()) }) });
}}

struct LoggerRoot {
    config: Rc<LoggerConfig>,
}

impl Context for LoggerRoot {}

impl RootContext for LoggerRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        duo_kit::follow_host_log_level();
        let bytes = duo_kit::plugin_configuration().unwrap_or_default();
        match LoggerConfig::parse(&bytes) {
            Ok(config) => {
                self.config = Rc::new(config);
                true
            }
            Err(e) => {
                log::error!("duo_logger: {e}");
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(LoggerStream { _config: self.config.clone() }))
    }
}

struct LoggerStream {
    _config: Rc<LoggerConfig>,
}

impl Context for LoggerStream {}
impl HttpContext for LoggerStream {}
