//! proxy-wasm adapter for duo_logger: reads headers, clocks and properties, hands them to the
//! pure record builder, publishes the record as filter state and moves the metrics.

use crate::config::LoggerConfig;
use crate::grpc::FrameCounter;
use crate::metrics::{self, Kind};
use crate::props;
use crate::record::{self, RecordInputs, RequestFacts, StreamFacts};
use duo_core::handoff::{self, AuthInfo, ContentInfo, RouteInfo, UsageInfo};
use duo_kit::Counters;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(LoggerRoot { config: Rc::new(LoggerConfig::default()), metrics: Rc::new(RefCell::new(Counters::new("duo_logger", metrics::DROPPED, metrics::MAX_NAMES))) })
    });
}}

/// Applies one request's updates to this VM's registry.
fn apply(counters: &mut Counters, updates: &[metrics::Update]) {
    for update in updates {
        match update.kind {
            Kind::Counter => counters.add(&update.name, update.value),
            Kind::Histogram => counters.record(&update.name, update.value),
        }
    }
}

struct LoggerRoot {
    config: Rc<LoggerConfig>,
    metrics: Rc<RefCell<Counters>>,
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
        Some(duo_kit::timing::wrap("duo_logger", Box::new(LoggerStream {
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            request: RequestFacts::default(),
            response_start: None,
            first_chunk: None,
            response_content_type: None,
            frames_in: FrameCounter::default(),
            frames_out: FrameCounter::default(),
            open_stream: None,
        })))
    }
}

struct LoggerStream {
    config: Rc<LoggerConfig>,
    metrics: Rc<RefCell<Counters>>,
    request: RequestFacts,
    response_start: Option<i64>,
    first_chunk: Option<i64>,
    response_content_type: Option<String>,
    /// gRPC messages each way (gRPC calls only).
    frames_in: FrameCounter,
    frames_out: FrameCounter,
    /// The in-flight gauge this gRPC call moved up (moved down in `on_log`).
    open_stream: Option<String>,
}

/// Feeds one body chunk to a counter, reading only the message prefixes from the host.
fn count_frames(counter: &mut FrameCounter, buffer: BufferType, body_size: usize) {
    counter.feed(body_size, |offset, n| hostcalls::get_buffer(buffer, offset, n).ok().flatten());
}

fn unix_ns(t: SystemTime) -> Option<i64> {
    t.duration_since(UNIX_EPOCH).ok().and_then(|d| i64::try_from(d.as_nanos()).ok())
}

fn int_property(path: &[&str]) -> Option<i64> {
    duo_kit::property(path).and_then(|b| props::i64_le(&b))
}

impl LoggerStream {
    fn now(&self) -> Option<i64> {
        hostcalls::get_current_time().ok().and_then(unix_ns)
    }

    fn stream_facts(&self) -> StreamFacts {
        StreamFacts {
            start_unix_ns: int_property(&["request", "time"]),
            duration_ns: int_property(&["request", "duration"]),
            response_start_unix_ns: self.response_start,
            first_chunk_unix_ns: self.first_chunk,
            log_unix_ns: self.now(),
            status_code: int_property(&["response", "code"]),
            request_bytes: int_property(&["request", "size"]),
            response_bytes: int_property(&["response", "size"]),
            response_code_details: duo_kit::property(&["response", "code_details"]).and_then(|b| props::text(&b)),
            grpc_status: if self.request.grpc { int_property(&["response", "grpc_status"]) } else { None },
            source_address: duo_kit::property(&["source", "address"]).and_then(|b| props::text(&b)),
            protocol: duo_kit::property(&["request", "protocol"]).and_then(|b| props::text(&b)),
            response_content_type: self.response_content_type.clone(),
            messages_in: (self.request.grpc && !self.frames_in.lost).then_some(self.frames_in.messages),
            messages_out: (self.request.grpc && !self.frames_out.lost).then_some(self.frames_out.messages),
        }
    }
}

impl Context for LoggerStream {}

impl HttpContext for LoggerStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let headers = duo_kit::Headers::request();
        self.request = RequestFacts::from_headers(|name| headers.get(name));
        if let Some(limit) = record::content_wanted(&self.config, &self.request)
            && let Err(status) = duo_kit::set_filter_state(handoff::CONTENT_WANTED, &limit)
        {
            log::warn!("duo_logger: cannot publish {}: {status:?}", handoff::CONTENT_WANTED);
        }
        // A gRPC call is an open stream until on_log: the in-flight gauge follows it.
        if let Some(method) = self.request.path.as_deref().and_then(crate::grpc::method_of).filter(|_| self.request.grpc) {
            let gauge = metrics::grpc_streams(method);
            self.metrics.borrow_mut().adjust(&gauge, 1);
            self.open_stream = Some(gauge);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let now = self.now();
        self.response_start = self.response_start.or(now);
        self.response_content_type = duo_kit::response_header("content-type");
        if end_of_stream {
            self.first_chunk = self.first_chunk.or(now);
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        if self.request.grpc {
            count_frames(&mut self.frames_in, BufferType::HttpRequestBody, body_size);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.first_chunk.is_none() && (body_size > 0 || end_of_stream) {
            self.first_chunk = self.now();
        }
        if self.request.grpc {
            count_frames(&mut self.frames_out, BufferType::HttpResponseBody, body_size);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Some(gauge) = self.open_stream.take() {
            self.metrics.borrow_mut().adjust(&gauge, -1);
        }
        let stream = self.stream_facts();
        let auth: Option<AuthInfo> = duo_kit::filter_state(handoff::AUTH);
        let route: Option<RouteInfo> = duo_kit::filter_state(handoff::ROUTE);
        let usage: Option<UsageInfo> = duo_kit::filter_state(handoff::USAGE);
        let content: Option<ContentInfo> =
            if record::content_wanted(&self.config, &self.request).is_some() { duo_kit::filter_state(handoff::CONTENT) } else { None };
        let inputs = RecordInputs {
            config: &self.config,
            request: &self.request,
            stream: &stream,
            auth: auth.as_ref(),
            route: route.as_ref(),
            usage: usage.as_ref(),
            content: content.as_ref(),
        };
        let record = record::build_record(&inputs);
        let updates = metrics::updates(&record);
        let line = serde_json::Value::Object(record).to_string();
        if let Err(status) = duo_kit::set_filter_state_raw(handoff::ACCESS_LOG, line.as_bytes()) {
            log::warn!("duo_logger: cannot publish {}: {status:?}", handoff::ACCESS_LOG);
        }
        apply(&mut self.metrics.borrow_mut(), &updates);
    }
}
