//! Where a filter's time goes inside Envoy: with the `callback-timing` feature, every HTTP
//! callback is timed with the host clock (so host calls made inside it count) and each VM logs,
//! every [`REPORT_EVERY`] requests, the mean microseconds per request of each callback at warning
//! level. Profiling builds only (`./build.sh bench` makes them in `target/bench-timing/`); without
//! the feature [`wrap`] returns the context unchanged and nothing is compiled in.

use proxy_wasm::traits::HttpContext;

/// Requests between two reports of one VM.
pub const REPORT_EVERY: u64 = 1000;

/// The filter's per-request context, timed when the feature is on.
#[cfg(not(feature = "callback-timing"))]
#[inline]
pub fn wrap(_filter: &'static str, inner: Box<dyn HttpContext>) -> Box<dyn HttpContext> {
    inner
}

/// Runs `f`; with the `callback-spans` feature it also adds `f`'s time to the span `name`,
/// reported per request beside the callbacks as `span_<name>` (outside their total): where a
/// callback's time goes between its own work and the host calls it makes.
#[cfg(not(feature = "callback-spans"))]
#[inline]
pub fn span<R>(_name: &'static str, f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(feature = "callback-spans")]
pub fn span<R>(name: &'static str, f: impl FnOnce() -> R) -> R {
    enabled::span(name, f)
}

#[cfg(feature = "callback-timing")]
pub fn wrap(filter: &'static str, inner: Box<dyn HttpContext>) -> Box<dyn HttpContext> {
    Box::new(enabled::Timed { filter, inner })
}

#[cfg(feature = "callback-timing")]
mod enabled {
    use super::REPORT_EVERY;
    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext};
    use proxy_wasm::types::Action;
    use std::cell::RefCell;
    use std::fmt::Write;
    use std::time::UNIX_EPOCH;

    const NAMES: [&str; 9] = [
        "request_headers",
        "request_body",
        "request_trailers",
        "response_headers",
        "response_body",
        "response_trailers",
        "log",
        "done",
        "http_call_response",
    ];

    #[derive(Default)]
    struct Totals {
        nanos: [u64; NAMES.len()],
        calls: [u64; NAMES.len()],
        requests: u64,
    }

    thread_local! {
        static TOTALS: RefCell<Totals> = RefCell::new(Totals::default());
        /// Time per marked span since the last report (`callback-spans` builds).
        static SPANS: RefCell<Vec<(&'static str, u64)>> = const { RefCell::new(Vec::new()) };
    }

    #[cfg(feature = "callback-spans")]
    pub(super) fn span<R>(name: &'static str, f: impl FnOnce() -> R) -> R {
        let start = now_ns();
        let out = f();
        let spent = now_ns().saturating_sub(start);
        SPANS.with(|s| {
            let mut s = s.borrow_mut();
            match s.iter_mut().find(|(n, _)| *n == name) {
                Some((_, nanos)) => *nanos += spent,
                None => s.push((name, spent)),
            }
        });
        out
    }

    fn now_ns() -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    fn timed<R>(slot: usize, f: impl FnOnce() -> R) -> R {
        let start = now_ns();
        let out = f();
        let spent = now_ns().saturating_sub(start);
        TOTALS.with(|t| {
            let mut t = t.borrow_mut();
            t.nanos[slot] += spent;
            t.calls[slot] += 1;
        });
        out
    }

    fn request_done(filter: &str) {
        let report = TOTALS.with(|t| {
            let mut t = t.borrow_mut();
            t.requests += 1;
            if t.requests < REPORT_EVERY {
                return None;
            }
            let n = t.requests as f64;
            let mut line = format!("duo_timing {filter}: requests={}", t.requests);
            let mut total = 0.0;
            for (i, name) in NAMES.iter().enumerate() {
                if t.calls[i] > 0 {
                    let us = t.nanos[i] as f64 / 1000.0 / n;
                    total += us;
                    let _ = write!(line, " {name}={us:.1}us");
                }
            }
            let _ = write!(line, " total={total:.1}us");
            SPANS.with(|s| {
                for (name, nanos) in s.borrow_mut().drain(..) {
                    let _ = write!(line, " span_{name}={:.1}us", nanos as f64 / 1000.0 / n);
                }
            });
            *t = Totals::default();
            Some(line)
        });
        if let Some(line) = report {
            log::warn!("{line}");
        }
    }

    pub(super) struct Timed {
        pub(super) filter: &'static str,
        pub(super) inner: Box<dyn HttpContext>,
    }

    impl Context for Timed {
        fn on_http_call_response(
            &mut self,
            token_id: u32,
            num_headers: usize,
            body_size: usize,
            num_trailers: usize,
        ) {
            timed(8, || {
                self.inner
                    .on_http_call_response(token_id, num_headers, body_size, num_trailers)
            })
        }
        fn on_done(&mut self) -> bool {
            let done = timed(7, || self.inner.on_done());
            request_done(self.filter);
            done
        }
    }

    impl HttpContext for Timed {
        fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
            timed(0, || {
                self.inner
                    .on_http_request_headers(num_headers, end_of_stream)
            })
        }
        fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
            timed(1, || {
                self.inner.on_http_request_body(body_size, end_of_stream)
            })
        }
        fn on_http_request_trailers(&mut self, num_trailers: usize) -> Action {
            timed(2, || self.inner.on_http_request_trailers(num_trailers))
        }
        fn on_http_response_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
            timed(3, || {
                self.inner
                    .on_http_response_headers(num_headers, end_of_stream)
            })
        }
        fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
            timed(4, || {
                self.inner.on_http_response_body(body_size, end_of_stream)
            })
        }
        fn on_http_response_trailers(&mut self, num_trailers: usize) -> Action {
            timed(5, || self.inner.on_http_response_trailers(num_trailers))
        }
        fn on_log(&mut self) {
            timed(6, || self.inner.on_log())
        }
    }
}
