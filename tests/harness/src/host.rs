//! The shared host: what Envoy keeps process-wide across worker VMs (shared data, queues,
//! metrics, the clock, node-level properties) plus the test's records (logs, http calls).

use crate::pairs::PropValue;
use crate::plugin::{LoadOptions, Plugin};
use crate::types::{Filter, HarnessError, HttpCall, LogEntry, LogLevel, Metric, MetricType};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 2026-01-01T00:00:00Z: the harness clock's start, so tests are deterministic.
pub const DEFAULT_START_NANOS: u64 = 1_767_225_600_000_000_000;

pub(crate) struct Queue {
    pub vm_id: String,
    pub name: String,
    pub items: VecDeque<Vec<u8>>,
    /// Label of the plugin that registered it (whose root gets `on_queue_ready`).
    pub owner: String,
}

pub(crate) struct HostState {
    pub now_nanos: u64,
    pub log_level: LogLevel,
    /// (vm_id, key) -> (value, cas)
    pub shared_data: BTreeMap<(String, String), (Vec<u8>, u32)>,
    pub next_cas: u32,
    pub queues: Vec<Queue>,
    pub ready_queues: Vec<(String, u32)>,
    pub metrics: Vec<Metric>,
    pub next_context_id: u32,
    pub next_token: u32,
    pub next_plugin: u32,
    pub properties: PropValue,
    pub clusters: Option<BTreeSet<String>>,
    pub logs: Vec<LogEntry>,
    pub http_calls: Vec<HttpCall>,
    pub random_state: u64,
}

impl HostState {
    pub(crate) fn alloc_context_id(&mut self) -> u32 {
        self.next_context_id += 1;
        self.next_context_id
    }
    pub(crate) fn metric_index(&self, name: &str) -> Option<usize> {
        self.metrics.iter().position(|m| m.name == name)
    }
    pub(crate) fn next_random(&mut self) -> u8 {
        // xorshift64*: deterministic bytes for WASI random_get (hash seeds and the like).
        let mut x = self.random_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.random_state = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
    }
}

/// Shared host state for one test. Plugins loaded from the same `Host` share shared data,
/// queues, metrics and the clock, like the worker VMs of one Envoy. Cloning a `Host` gives
/// another handle to the same state. Not `Send`: each test owns its own.
#[derive(Clone)]
pub struct Host {
    pub(crate) state: Rc<RefCell<HostState>>,
}

impl Default for Host {
    fn default() -> Self {
        Self::new()
    }
}

impl Host {
    /// A fresh host: clock at [`DEFAULT_START_NANOS`], log level Info, no shared data, every
    /// cluster name accepted by `proxy_http_call`.
    pub fn new() -> Host {
        Host {
            state: Rc::new(RefCell::new(HostState {
                now_nanos: DEFAULT_START_NANOS,
                log_level: LogLevel::Info,
                shared_data: BTreeMap::new(),
                next_cas: 0,
                queues: Vec::new(),
                ready_queues: Vec::new(),
                metrics: Vec::new(),
                next_context_id: 0,
                next_token: 0,
                next_plugin: 0,
                properties: PropValue::Map(Vec::new()),
                clusters: None,
                logs: Vec::new(),
                http_calls: Vec::new(),
                random_state: 0x9E37_79B9_7F4A_7C15,
            })),
        }
    }

    /// Loads `dist/<filter>.wasm` with `config` as the plugin configuration and runs
    /// `_initialize`, the root `proxy_on_context_create`, `proxy_on_vm_start` and
    /// `proxy_on_configure`. Check [`Plugin::configured`] and [`Plugin::logs`] for the outcome.
    /// Errors (never a skip) when the artifact is missing: run `./build.sh build`.
    pub fn load(&self, filter: Filter, config: &str) -> Result<Plugin, HarnessError> {
        self.load_with(filter, LoadOptions::new(config))
    }

    /// [`Host::load`] with every option (vm config, vm_id, root_id, plugin name).
    pub fn load_with(&self, filter: Filter, options: LoadOptions) -> Result<Plugin, HarnessError> {
        Plugin::load(self, &filter.artifact(), filter.name(), options)
    }

    /// Loads any proxy-wasm module by path (label = file stem).
    pub fn load_path(&self, path: &Path, options: LoadOptions) -> Result<Plugin, HarnessError> {
        let label = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Plugin::load(self, path, &label, options)
    }

    /// The host clock (what `proxy_get_current_time_nanoseconds` and WASI `clock_time_get` see).
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.state.borrow().now_nanos)
    }
    pub fn now_nanos(&self) -> u64 {
        self.state.borrow().now_nanos
    }
    pub fn set_now(&self, t: SystemTime) {
        let nanos = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        self.state.borrow_mut().now_nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
    }
    pub fn set_now_unix_secs(&self, secs: u64) {
        self.state.borrow_mut().now_nanos = secs.saturating_mul(1_000_000_000);
    }
    /// Moves the clock forward (ticks are not fired: call [`Plugin::tick`]).
    pub fn advance(&self, d: Duration) {
        let mut s = self.state.borrow_mut();
        s.now_nanos = s
            .now_nanos
            .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// The level `proxy_get_log_level` reports (Envoy's `--log-level`; default Info). Messages
    /// below it are still recorded if the guest sends them.
    pub fn set_log_level(&self, level: LogLevel) {
        self.state.borrow_mut().log_level = level;
    }

    /// Every log line of every plugin of this host, in order.
    pub fn logs(&self) -> Vec<LogEntry> {
        self.state.borrow().logs.clone()
    }

    /// Shared data under the default (empty) vm_id: `(value, cas)`.
    pub fn shared_data(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared_data_in("", key)
    }
    pub fn shared_data_in(&self, vm_id: &str, key: &str) -> Option<(Vec<u8>, u32)> {
        self.state
            .borrow()
            .shared_data
            .get(&(vm_id.to_string(), key.to_string()))
            .cloned()
    }
    /// Writes shared data as another worker would (bumps the cas).
    pub fn set_shared_data(&self, key: &str, value: &[u8]) {
        self.set_shared_data_in("", key, value);
    }
    pub fn set_shared_data_in(&self, vm_id: &str, key: &str, value: &[u8]) {
        let mut s = self.state.borrow_mut();
        s.next_cas += 1;
        let cas = s.next_cas;
        s.shared_data
            .insert((vm_id.to_string(), key.to_string()), (value.to_vec(), cas));
    }

    /// Items waiting in a shared queue (by vm_id and name), oldest first.
    pub fn queue_items(&self, vm_id: &str, name: &str) -> Vec<Vec<u8>> {
        let s = self.state.borrow();
        s.queues
            .iter()
            .find(|q| q.vm_id == vm_id && q.name == name)
            .map(|q| q.items.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Enqueues an item as another VM would; the registering plugin gets `on_queue_ready` from
    /// [`Plugin::deliver_ready_queues`]. False when no such queue was registered.
    pub fn enqueue_shared_queue(&self, vm_id: &str, name: &str, item: &[u8]) -> bool {
        let mut s = self.state.borrow_mut();
        let Some(i) = s
            .queues
            .iter()
            .position(|q| q.vm_id == vm_id && q.name == name)
        else {
            return false;
        };
        let owner = match s.queues.get_mut(i) {
            Some(q) => {
                q.items.push_back(item.to_vec());
                q.owner.clone()
            }
            None => return false,
        };
        s.ready_queues.push((owner, i as u32 + 1));
        true
    }

    /// A metric by its full name.
    pub fn metric(&self, name: &str) -> Option<Metric> {
        self.state
            .borrow()
            .metrics
            .iter()
            .find(|m| m.name == name)
            .cloned()
    }
    /// Counter or gauge value by name (`None` when never defined).
    pub fn metric_value(&self, name: &str) -> Option<i64> {
        self.metric(name).map(|m| m.value)
    }
    pub fn metrics(&self) -> Vec<Metric> {
        self.state.borrow().metrics.clone()
    }
    pub fn metric_kind(&self, name: &str) -> Option<MetricType> {
        self.metric(name).map(|m| m.kind)
    }

    /// Every `proxy_http_call` of every plugin, in dispatch order.
    pub fn http_calls(&self) -> Vec<HttpCall> {
        self.state.borrow().http_calls.clone()
    }

    /// Restricts `proxy_http_call` to these cluster names; any other gets `BadArgument`, as in
    /// Envoy when the cluster does not exist. By default every name is accepted.
    pub fn set_clusters(&self, names: &[&str]) {
        self.state.borrow_mut().clusters = Some(names.iter().map(|s| (*s).to_string()).collect());
    }

    /// A property every context of this host sees unless the stream overrides it (node
    /// metadata, `xds.*`...). Paths walk maps: `&["node", "metadata", "REGION"]`.
    pub fn set_property(&self, path: &[&str], value: impl Into<PropValue>) {
        let path: Vec<String> = path.iter().map(|s| (*s).to_string()).collect();
        self.state
            .borrow_mut()
            .properties
            .insert(&path, value.into());
    }
}
