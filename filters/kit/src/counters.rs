//! [`Counters`]: the per-VM registry of proxy-wasm metrics every filter uses. A name is defined
//! once per VM and its id cached; the number of distinct names is capped, so a flood of odd
//! tag values cannot grow Envoy's stat table without bound. Updates past the cap go to one
//! overflow counter outside the cap, and the first one logs a warning.
//!
//! The registry is generic over [`MetricHost`], so its decisions (cache, cap, overflow, failed
//! host calls) are tested natively with a fake host; [`ProxyWasm`] is the real one.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MetricType, Status};
use std::collections::HashMap;

/// What a metric is: a counter adds, a histogram records a sample, a gauge goes up and down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Histogram,
    Gauge,
}

/// The three host calls a registry needs.
pub trait MetricHost {
    fn define(&mut self, kind: Kind, name: &str) -> Result<u32, Status>;
    fn increment(&mut self, id: u32, by: i64) -> Result<(), Status>;
    fn record(&mut self, id: u32, value: u64) -> Result<(), Status>;
}

/// The proxy-wasm host.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProxyWasm;

impl MetricHost for ProxyWasm {
    fn define(&mut self, kind: Kind, name: &str) -> Result<u32, Status> {
        let kind = match kind {
            Kind::Counter => MetricType::Counter,
            Kind::Histogram => MetricType::Histogram,
            Kind::Gauge => MetricType::Gauge,
        };
        hostcalls::define_metric(kind, name)
    }

    fn increment(&mut self, id: u32, by: i64) -> Result<(), Status> {
        hostcalls::increment_metric(id, by)
    }

    fn record(&mut self, id: u32, value: u64) -> Result<(), Status> {
        hostcalls::record_metric(id, value)
    }
}

/// The registry of one VM on the proxy-wasm host.
pub type Counters = Registry<ProxyWasm>;

impl Counters {
    /// `filter` prefixes the log lines; `overflow` is the counter that counts updates dropped
    /// once `cap` distinct names are defined.
    pub fn new(filter: &'static str, overflow: &'static str, cap: usize) -> Self {
        Registry::with_host(ProxyWasm, filter, overflow, cap)
    }
}

/// Metric ids by name, at most `cap` names plus the overflow counter.
pub struct Registry<H> {
    host: H,
    filter: &'static str,
    overflow: &'static str,
    cap: usize,
    ids: HashMap<String, (Kind, u32)>,
    overflow_id: Option<u32>,
    warned_full: bool,
    warned_failed: bool,
}

impl<H: MetricHost> Registry<H> {
    pub fn with_host(host: H, filter: &'static str, overflow: &'static str, cap: usize) -> Self {
        Registry { host, filter, overflow, cap, ids: HashMap::new(), overflow_id: None, warned_full: false, warned_failed: false }
    }

    /// Adds one to the counter `name`.
    pub fn count(&mut self, name: &str) {
        self.add(name, 1);
    }

    /// Adds `by` to the counter `name` (saturating at `i64::MAX`).
    pub fn add(&mut self, name: &str, by: u64) {
        if let Some(id) = self.id(Kind::Counter, name) {
            let result = self.host.increment(id, i64::try_from(by).unwrap_or(i64::MAX));
            self.check(name, result);
        }
    }

    /// Records `value` in the histogram `name`.
    pub fn record(&mut self, name: &str, value: u64) {
        if let Some(id) = self.id(Kind::Histogram, name) {
            let result = self.host.record(id, value);
            self.check(name, result);
        }
    }

    /// Moves the gauge `name` by `delta` (e.g. +1 when a stream opens, -1 when it ends).
    pub fn adjust(&mut self, name: &str, delta: i64) {
        if let Some(id) = self.id(Kind::Gauge, name) {
            let result = self.host.increment(id, delta);
            self.check(name, result);
        }
    }

    /// Distinct names defined so far (the overflow counter not included).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn id(&mut self, kind: Kind, name: &str) -> Option<u32> {
        if let Some(&(defined, id)) = self.ids.get(name) {
            if defined == kind {
                return Some(id);
            }
            // One name, two kinds: a bug in the caller; Envoy would refuse or mix them.
            self.warn_failed(name, "defined with another kind");
            return None;
        }
        if name == self.overflow {
            return self.overflow_id();
        }
        if self.ids.len() >= self.cap {
            self.overflowed();
            return None;
        }
        match self.host.define(kind, name) {
            Ok(id) => {
                self.ids.insert(name.to_owned(), (kind, id));
                Some(id)
            }
            Err(status) => {
                // Not cached: the next update tries again.
                self.warn_failed(name, &format!("define_metric failed ({status:?})"));
                None
            }
        }
    }

    fn overflow_id(&mut self) -> Option<u32> {
        if self.overflow_id.is_none() {
            match self.host.define(Kind::Counter, self.overflow) {
                Ok(id) => self.overflow_id = Some(id),
                Err(status) => self.warn_failed(self.overflow, &format!("define_metric failed ({status:?})")),
            }
        }
        self.overflow_id
    }

    fn overflowed(&mut self) {
        if !self.warned_full {
            self.warned_full = true;
            log::warn!(
                "{}: {} distinct metric names defined in this VM; updates of new names are dropped and counted in {}",
                self.filter,
                self.cap,
                self.overflow
            );
        }
        if let Some(id) = self.overflow_id() {
            let result = self.host.increment(id, 1);
            self.check(self.overflow, result);
        }
    }

    /// A failed update changes no answer, only what the metrics show: logged, never fatal.
    fn check(&mut self, name: &str, result: Result<(), Status>) {
        if let Err(status) = result {
            self.warn_failed(name, &format!("update failed ({status:?})"));
        }
    }

    /// The first failure is a warning, later ones debug lines: a broken stats sink must not
    /// flood Envoy's log with one line per request.
    fn warn_failed(&mut self, name: &str, what: &str) {
        if self.warned_failed {
            log::debug!("{}: metric {name}: {what}", self.filter);
        } else {
            self.warned_failed = true;
            log::warn!("{}: metric {name}: {what} (later failures are logged at debug level)", self.filter);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every call; `fail_define` / `fail_update` make those calls fail for a name.
    #[derive(Default)]
    struct FakeHost {
        defined: Vec<(Kind, String)>,
        updates: Vec<(u32, &'static str, u64)>,
        fail_define: Option<&'static str>,
        fail_update: Option<u32>,
    }

    impl FakeHost {
        /// Only ids `define` handed out (10, 20, ...) may be updated.
        fn check_id(&self, id: u32) {
            let n = usize::try_from(id / 10).unwrap();
            assert!(id.is_multiple_of(10) && (1..=self.defined.len()).contains(&n), "unknown id {id}");
        }
    }

    impl MetricHost for FakeHost {
        fn define(&mut self, kind: Kind, name: &str) -> Result<u32, Status> {
            if self.fail_define == Some(name) {
                return Err(Status::InternalFailure);
            }
            assert!(!self.defined.iter().any(|(_, n)| n == name), "{name} defined twice");
            self.defined.push((kind, name.to_owned()));
            Ok(u32::try_from(self.defined.len()).unwrap() * 10)
        }
        fn increment(&mut self, id: u32, by: i64) -> Result<(), Status> {
            self.check_id(id);
            self.updates.push((id, if by < 0 { "dec" } else { "inc" }, by.unsigned_abs()));
            if self.fail_update == Some(id) { Err(Status::NotFound) } else { Ok(()) }
        }
        fn record(&mut self, id: u32, value: u64) -> Result<(), Status> {
            self.check_id(id);
            self.updates.push((id, "rec", value));
            Ok(())
        }
    }

    fn registry(cap: usize) -> Registry<FakeHost> {
        Registry::with_host(FakeHost::default(), "duo_test", "duo_test.metrics_dropped", cap)
    }

    #[test]
    fn a_name_is_defined_once_and_its_id_reused() {
        let mut r = registry(10);
        r.count("a.result.ok");
        r.add("a.result.ok", 5);
        r.record("lat.feature.x", 250);
        r.add("big", u64::MAX);
        assert_eq!(
            r.host.defined,
            [(Kind::Counter, "a.result.ok".to_owned()), (Kind::Histogram, "lat.feature.x".to_owned()), (Kind::Counter, "big".to_owned())]
        );
        assert_eq!(r.host.updates, [(10, "inc", 1), (10, "inc", 5), (20, "rec", 250), (30, "inc", i64::MAX as u64)]);
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn past_the_cap_new_names_go_to_the_overflow_counter() {
        let mut r = registry(2);
        r.count("a");
        r.count("b");
        r.count("c");
        r.record("d", 7);
        r.count("a");
        assert_eq!(r.len(), 2);
        let names: Vec<&str> = r.host.defined.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "duo_test.metrics_dropped"]);
        // c and d each moved the overflow counter (id 30, defined once); known names still count.
        assert_eq!(r.host.updates, [(10, "inc", 1), (20, "inc", 1), (30, "inc", 1), (30, "inc", 1), (10, "inc", 1)]);
        assert!(r.warned_full);
        // The overflow counter itself is outside the cap.
        r.count("duo_test.metrics_dropped");
        assert_eq!(r.host.updates.last(), Some(&(30, "inc", 1)));
    }

    #[test]
    fn a_failed_definition_is_not_cached_and_a_kind_clash_is_refused() {
        let mut r = registry(10);
        r.host.fail_define = Some("flaky");
        r.count("flaky");
        assert!(r.is_empty() && r.host.updates.is_empty());
        assert!(r.warned_failed);
        r.host.fail_define = None;
        r.count("flaky");
        assert_eq!(r.host.updates, [(10, "inc", 1)]);
        r.record("flaky", 3);
        assert_eq!(r.host.updates.len(), 1, "a counter name recorded as a histogram");
        assert_eq!(r.host.defined.len(), 1);
    }

    #[test]
    fn gauges_go_up_and_down_and_never_mix_with_counters() {
        let mut r = registry(10);
        r.adjust("streams.grpc_method.executeworkflow", 1);
        r.adjust("streams.grpc_method.executeworkflow", 1);
        r.adjust("streams.grpc_method.executeworkflow", -1);
        assert_eq!(r.host.defined, [(Kind::Gauge, "streams.grpc_method.executeworkflow".to_owned())]);
        assert_eq!(r.host.updates, [(10, "inc", 1), (10, "inc", 1), (10, "dec", 1)]);
        r.count("streams.grpc_method.executeworkflow");
        assert_eq!(r.host.updates.len(), 3, "a gauge name counted as a counter");
    }

    #[test]
    fn a_failed_update_is_logged_and_later_updates_still_go_out() {
        let mut r = registry(10);
        r.host.fail_update = Some(10);
        r.count("a");
        assert!(r.warned_failed);
        r.count("a");
        assert_eq!(r.host.updates, [(10, "inc", 1), (10, "inc", 1)]);
    }
}
