//! A loaded filter: one wasmtime instance (one Envoy worker VM) with its root context.

use crate::host::Host;
use crate::stream::{Stream, StreamCore, pump};
use crate::types::{Action, HarnessError, HttpCall, LogEntry, LogLevel};
use crate::vm::{CallResponse, VmState, linker};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use wasmtime::{Config, Engine, Instance, Module, OptLevel, Store, Val};

/// `DUO_FUEL_TRACE=1`: print, per callback, the wasm operators spent between its host calls
/// (a deterministic profile of where a callback's work goes; docs/harness.md).
fn fuel_trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("DUO_FUEL_TRACE").is_some())
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        // Test modules run briefly: compile fast rather than run fast.
        config.cranelift_opt_level(OptLevel::None);
        // Fuel counts the wasm operators each callback executes: a deterministic measure of the
        // work inside a VM (host calls excluded), independent of the machine's load.
        config.consume_fuel(true);
        Engine::new(&config).unwrap_or_default()
    })
}

/// Compiles each module once per test process (keyed by path). Different modules compile in
/// parallel; threads wanting the same module wait for the first one.
pub(crate) fn module(path: &Path) -> Result<Module, HarnessError> {
    type Slot = Arc<OnceLock<Result<Module, HarnessError>>>;
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Slot>>> = OnceLock::new();
    if !path.is_file() {
        return Err(HarnessError(format!(
            "{} is missing: run ./build.sh build (it builds and copies dist/*.wasm)",
            path.display()
        )));
    }
    let slot: Slot = {
        let cache = MODULES.get_or_init(|| Mutex::new(HashMap::new()));
        let mut cache = cache
            .lock()
            .map_err(|_| HarnessError("module cache poisoned".into()))?;
        cache.entry(path.to_path_buf()).or_default().clone()
    };
    slot.get_or_init(|| {
        Module::from_file(engine(), path)
            .map_err(|e| HarnessError(format!("{} does not compile: {e}", path.display())))
    })
    .clone()
}

/// The module's imports as `(module, name)` (read from the binary, no compilation).
pub fn module_imports(path: &Path) -> Result<Vec<(String, String)>, HarnessError> {
    Ok(crate::wasmfile::interface(path)?.imports)
}

/// The module's export names (read from the binary, no compilation).
pub fn module_exports(path: &Path) -> Result<Vec<String>, HarnessError> {
    Ok(crate::wasmfile::interface(path)?.exports)
}

/// How to load a plugin: Envoy's `PluginConfig.configuration`, `vm_config.configuration`,
/// `vm_config.vm_id`, `root_id` and `name`.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub config: Vec<u8>,
    pub vm_config: Vec<u8>,
    pub vm_id: String,
    pub root_id: String,
    /// The plugin name (`plugin_name` property); defaults to the module name.
    pub name: Option<String>,
}

impl LoadOptions {
    pub fn new(config: &str) -> LoadOptions {
        LoadOptions {
            config: config.as_bytes().to_vec(),
            ..Default::default()
        }
    }
    pub fn vm_id(mut self, vm_id: &str) -> Self {
        self.vm_id = vm_id.to_string();
        self
    }
    pub fn root_id(mut self, root_id: &str) -> Self {
        self.root_id = root_id.to_string();
        self
    }
    pub fn vm_config(mut self, vm_config: &str) -> Self {
        self.vm_config = vm_config.as_bytes().to_vec();
        self
    }
}

pub(crate) struct PluginInner {
    host: Host,
    label: String,
    store: RefCell<Store<VmState>>,
    instance: Instance,
    failure: RefCell<Option<String>>,
    configured: Cell<bool>,
    vm_started: Cell<bool>,
}

/// A loaded filter (one VM). Cheap to clone (a handle). Streams keep it alive.
#[derive(Clone)]
pub struct Plugin {
    pub(crate) inner: Rc<PluginInner>,
}

impl PluginInner {
    /// Calls an export with `context` as the effective context; traps mark the VM dead.
    fn call(
        &self,
        context: u32,
        name: &str,
        args: &[i32],
        log_phase: bool,
    ) -> Result<Option<i32>, String> {
        if let Some(f) = self.failure.borrow().as_ref() {
            return Err(format!("VM already failed: {f}"));
        }
        let result = {
            let mut store = self.store.borrow_mut();
            let func = self
                .instance
                .get_func(&mut *store, name)
                .ok_or_else(|| format!("harness: the module does not export {name}"))?;
            {
                let data = store.data_mut();
                data.effective_context = context;
                data.in_log_phase = log_phase;
            }
            let params: Vec<Val> = args.iter().map(|a| Val::I32(*a)).collect();
            let mut results = vec![Val::I32(0); func.ty(&*store).results().len()];
            let fuel_before = store.get_fuel().unwrap_or(0);
            let trace = fuel_trace();
            if trace {
                eprintln!("duo-harness fuel {} {name}", self.label);
                store.data_mut().fuel_trace = Some(fuel_before);
            }
            let r = func.call(&mut *store, &params, &mut results);
            let used = fuel_before.saturating_sub(store.get_fuel().unwrap_or(0));
            if trace {
                let spent = store.data().fuel_trace.map_or(0, |mark| mark.saturating_sub(store.get_fuel().unwrap_or(0)));
                eprintln!("duo-harness fuel {spent:>9} ops, then the callback returns ({used} in all)");
                store.data_mut().fuel_trace = None;
            }
            if let Some((core, stage)) = store.data().contexts.get(&context) {
                core.record_fuel(*stage, name, used);
            }
            let data = store.data_mut();
            data.in_log_phase = false;
            data.effective_context = data.root_context_id;
            r.map(|()| results.first().and_then(Val::i32))
        };
        result.map_err(|e| {
            let critical: Vec<String> = self
                .host
                .logs()
                .into_iter()
                .filter(|l| l.plugin == self.label && l.level == LogLevel::Critical)
                .map(|l| l.message)
                .collect();
            let msg = format!(
                "{} trapped in {name}: {}; critical logs: {critical:?}; details: {e:?}",
                self.label,
                e.root_cause()
            );
            *self.failure.borrow_mut() = Some(msg.clone());
            msg
        })
    }

    pub(crate) fn call_action(
        &self,
        context: u32,
        name: &str,
        args: &[i32],
        log_phase: bool,
    ) -> Action {
        match self.call(context, name, args, log_phase) {
            Ok(Some(v)) => Action::from_raw(v),
            Ok(None) => Action::Continue,
            Err(e) => Action::Failed(e),
        }
    }

    fn call_bool(&self, context: u32, name: &str, args: &[i32]) -> Result<bool, String> {
        self.call(context, name, args, false)
            .map(|v| v.unwrap_or(0) != 0)
    }

    pub(crate) fn register_stream_context(&self, ctx: u32, core: Rc<StreamCore>, stage: usize) {
        self.store
            .borrow_mut()
            .data_mut()
            .contexts
            .insert(ctx, (core, stage));
    }

    pub(crate) fn unregister_context(&self, ctx: u32) {
        self.store.borrow_mut().data_mut().contexts.remove(&ctx);
    }

    pub(crate) fn create_context(&self, ctx: u32) -> Action {
        let root = self.store.borrow().data().root_context_id;
        self.call_action(
            ctx,
            "proxy_on_context_create",
            &[ctx as i32, root as i32],
            false,
        )
    }

    fn root_id(&self) -> u32 {
        self.store.borrow().data().root_context_id
    }

    /// Runs the callbacks streams are owed after a root-level or callout callback.
    fn pump_streams(&self) {
        let cores: Vec<Rc<StreamCore>> = self
            .store
            .borrow()
            .data()
            .contexts
            .values()
            .map(|(c, _)| c.clone())
            .collect();
        for core in cores {
            pump(&core);
        }
    }
}

impl Plugin {
    pub(crate) fn load(
        host: &Host,
        path: &Path,
        module_name: &str,
        options: LoadOptions,
    ) -> Result<Plugin, HarnessError> {
        let module = module(path)?;
        let (label, root_context_id) = {
            let mut h = host.state.borrow_mut();
            h.next_plugin += 1;
            let label = format!("{module_name}#{}", h.next_plugin);
            (label, h.alloc_context_id())
        };
        let state = VmState {
            host: host.state.clone(),
            label: label.clone(),
            vm_id: options.vm_id.clone(),
            root_id: options.root_id.clone(),
            plugin_name: options
                .name
                .clone()
                .unwrap_or_else(|| module_name.to_string()),
            root_context_id,
            plugin_config: options.config.clone(),
            vm_config: options.vm_config.clone(),
            tick_period_ms: 0,
            effective_context: root_context_id,
            contexts: HashMap::new(),
            call_response: None,
            in_log_phase: false,
            done_calls: 0,
            foreign_calls: Vec::new(),
            stdout: Vec::new(),
            fuel_trace: None,
        };
        let mut store = Store::new(engine(), state);
        store
            .set_fuel(u64::MAX)
            .map_err(|e| HarnessError(format!("fuel: {e}")))?;
        let mut l = linker(engine()).map_err(|e| HarnessError(format!("linker: {e}")))?;
        l.define_unknown_imports_as_traps(&module)
            .map_err(|e| HarnessError(format!("imports: {e}")))?;
        let instance = l
            .instantiate(&mut store, &module)
            .map_err(|e| HarnessError(format!("{} does not instantiate: {e:?}", path.display())))?;
        let inner = Rc::new(PluginInner {
            host: host.clone(),
            label,
            store: RefCell::new(store),
            instance,
            failure: RefCell::new(None),
            configured: Cell::new(false),
            vm_started: Cell::new(false),
        });
        let plugin = Plugin { inner };
        let root = root_context_id as i32;
        let vm_len = options.vm_config.len() as i32;
        let cfg_len = options.config.len() as i32;
        let init = plugin
            .inner
            .call(root_context_id, "_initialize", &[], false);
        let created = init.and_then(|_| {
            plugin.inner.call(
                root_context_id,
                "proxy_on_context_create",
                &[root, 0],
                false,
            )
        });
        let started = created.and_then(|_| {
            plugin
                .inner
                .call_bool(root_context_id, "proxy_on_vm_start", &[root, vm_len])
        });
        if let Ok(started) = started {
            plugin.inner.vm_started.set(started);
            if started {
                let ok = plugin
                    .inner
                    .call_bool(root_context_id, "proxy_on_configure", &[root, cfg_len])
                    .unwrap_or(false);
                plugin.inner.configured.set(ok);
            }
        }
        Ok(plugin)
    }

    pub(crate) fn host(&self) -> Host {
        self.inner.host.clone()
    }

    /// `duo_auth#1`: the module name and a per-host sequence number.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// The root context id.
    pub fn root_context_id(&self) -> u32 {
        self.inner.root_id()
    }

    /// Whether `proxy_on_vm_start` returned true.
    pub fn vm_started(&self) -> bool {
        self.inner.vm_started.get()
    }

    /// Whether the last `proxy_on_configure` returned true (Envoy refuses the plugin if not).
    pub fn configured(&self) -> bool {
        self.inner.configured.get()
    }

    /// Runs `proxy_on_configure` again with a new configuration (Envoy's config update).
    pub fn reconfigure(&self, config: &str) -> bool {
        let root = self.root_context_id();
        self.inner.store.borrow_mut().data_mut().plugin_config = config.as_bytes().to_vec();
        let ok = self
            .inner
            .call_bool(
                root,
                "proxy_on_configure",
                &[root as i32, config.len() as i32],
            )
            .unwrap_or(false);
        self.inner.configured.set(ok);
        ok
    }

    /// The trap that killed this VM, if any.
    pub fn failure(&self) -> Option<String> {
        self.inner.failure.borrow().clone()
    }

    /// This plugin's log lines.
    pub fn logs(&self) -> Vec<LogEntry> {
        self.inner
            .host
            .logs()
            .into_iter()
            .filter(|l| l.plugin == self.inner.label)
            .collect()
    }

    /// This plugin's log lines at `level` or above, as text.
    pub fn log_messages(&self, level: LogLevel) -> Vec<String> {
        self.logs()
            .into_iter()
            .filter(|l| l.level >= level)
            .map(|l| l.message)
            .collect()
    }

    /// True when some log line at `level` or above contains `needle`.
    pub fn logged(&self, level: LogLevel, needle: &str) -> bool {
        self.logs()
            .iter()
            .any(|l| l.level >= level && l.message.contains(needle))
    }

    /// The tick period the guest asked for (`None` when 0 / never set).
    pub fn tick_period(&self) -> Option<Duration> {
        let ms = self.inner.store.borrow().data().tick_period_ms;
        (ms > 0).then(|| Duration::from_millis(u64::from(ms)))
    }

    /// Fires `proxy_on_tick` once (advance the clock yourself with [`Host::advance`]).
    pub fn tick(&self) -> Action {
        let root = self.root_context_id();
        let a = self
            .inner
            .call_action(root, "proxy_on_tick", &[root as i32], false);
        self.inner.pump_streams();
        a
    }

    /// Delivers `proxy_on_queue_ready(queue_id)` to the root context.
    pub fn queue_ready(&self, queue_id: u32) -> Action {
        let root = self.root_context_id();
        let a = self.inner.call_action(
            root,
            "proxy_on_queue_ready",
            &[root as i32, queue_id as i32],
            false,
        );
        self.inner.pump_streams();
        a
    }

    /// Delivers every pending queue notification for queues this plugin registered.
    pub fn deliver_ready_queues(&self) -> Action {
        let ids: Vec<u32> = {
            let mut h = self.inner.host.state.borrow_mut();
            let (mine, rest): (Vec<_>, Vec<_>) = h
                .ready_queues
                .drain(..)
                .partition(|(o, _)| *o == self.inner.label);
            h.ready_queues = rest;
            mine.into_iter().map(|(_, id)| id).collect()
        };
        let mut result = Action::Continue;
        for id in ids {
            let a = self.queue_ready(id);
            if let Action::Failed(_) = a {
                result = a;
            }
        }
        result
    }

    /// Every http call this plugin dispatched (answered or not), in order.
    pub fn http_calls(&self) -> Vec<HttpCall> {
        self.inner
            .host
            .http_calls()
            .into_iter()
            .filter(|c| c.plugin == self.inner.label)
            .collect()
    }

    /// The calls still waiting for a response.
    pub fn pending_http_calls(&self) -> Vec<HttpCall> {
        self.http_calls()
            .into_iter()
            .filter(|c| !c.answered)
            .collect()
    }

    /// Delivers the response of http call `token` (include `:status` in `headers`) to the
    /// context that made it, then runs whatever the filter resumed (continue, local reply...).
    pub fn deliver_http_call_response(
        &self,
        token: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Action {
        let response = CallResponse {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
                .collect(),
            body: body.to_vec(),
            trailers: Vec::new(),
        };
        self.deliver(token, Some(response))
    }

    /// Fails http call `token` as Envoy does on timeout or reset: the callback runs with 0
    /// headers, no body, and the response maps unavailable.
    pub fn fail_http_call(&self, token: u32) -> Action {
        self.deliver(token, None)
    }

    fn deliver(&self, token: u32, response: Option<CallResponse>) -> Action {
        let ctx = {
            let mut h = self.inner.host.state.borrow_mut();
            let Some(call) = h
                .http_calls
                .iter_mut()
                .find(|c| c.token == token && c.plugin == self.inner.label)
            else {
                return Action::Failed(format!(
                    "harness: {} made no http call {token}",
                    self.inner.label
                ));
            };
            if call.answered {
                return Action::Failed(format!("harness: http call {token} was already answered"));
            }
            call.answered = true;
            call.context_id
        };
        let (nh, nb, nt) = match &response {
            Some(r) => (r.headers.len(), r.body.len(), r.trailers.len()),
            None => (0, 0, 0),
        };
        self.inner.store.borrow_mut().data_mut().call_response = response;
        let a = self.inner.call_action(
            ctx,
            "proxy_on_http_call_response",
            &[ctx as i32, token as i32, nh as i32, nb as i32, nt as i32],
            false,
        );
        self.inner.store.borrow_mut().data_mut().call_response = None;
        self.inner.pump_streams();
        a
    }

    /// A new HTTP stream through this filter alone.
    pub fn new_stream(&self) -> Stream {
        Stream::chain(&[self])
    }

    /// Foreign function calls this VM made (name, argument bytes).
    pub fn foreign_calls(&self) -> Vec<(String, Vec<u8>)> {
        self.inner.store.borrow().data().foreign_calls.clone()
    }

    /// How many times the guest called `proxy_done`.
    pub fn done_calls(&self) -> u32 {
        self.inner.store.borrow().data().done_calls
    }
}
