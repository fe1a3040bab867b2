//! One VM's host side: the store data and the `env.proxy_*` / `wasi_snapshot_preview1.*`
//! functions, with Envoy 1.40's semantics where they matter to filters.

use crate::host::HostState;
use crate::pairs::{PropValue, decode_pairs, encode_pairs, split_path};
use crate::stream::{Deferred, DirKind, StreamCore};
use crate::types::{HttpCall, LocalReply, LogEntry, LogLevel, Metric, MetricType, Status};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use wasmtime::{Caller, Engine, Extern, Linker, Result, format_err};

/// The response of an http call, visible only during `proxy_on_http_call_response`.
pub(crate) struct CallResponse {
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, Vec<u8>)>,
}

pub(crate) struct VmState {
    pub host: Rc<RefCell<HostState>>,
    pub label: String,
    pub vm_id: String,
    pub root_id: String,
    pub plugin_name: String,
    pub root_context_id: u32,
    pub plugin_config: Vec<u8>,
    pub vm_config: Vec<u8>,
    pub tick_period_ms: u32,
    /// The context the running callback was made for, and the one `set_effective_context`
    /// switched to (host calls act on the latter).
    pub effective_context: u32,
    pub contexts: HashMap<u32, (Rc<StreamCore>, usize)>,
    pub call_response: Option<CallResponse>,
    pub in_log_phase: bool,
    pub done_calls: u32,
    pub foreign_calls: Vec<(String, Vec<u8>)>,
    pub stdout: Vec<u8>,
    /// `DUO_FUEL_TRACE` set: the fuel left at the last callback start or host call, to print the
    /// wasm operators spent between host calls (docs/harness.md).
    pub fuel_trace: Option<u64>,
}

impl VmState {
    fn stream(&self) -> Option<(Rc<StreamCore>, usize)> {
        self.contexts
            .get(&self.effective_context)
            .map(|(c, i)| (c.clone(), *i))
    }
    fn log(&self, level: LogLevel, message: String) {
        self.host.borrow_mut().logs.push(LogEntry {
            plugin: self.label.clone(),
            context_id: self.effective_context,
            level,
            message,
        });
    }
}

type C<'a> = Caller<'a, VmState>;

fn memory(caller: &mut C<'_>) -> Result<wasmtime::Memory> {
    caller
        .get_export("memory")
        .and_then(Extern::into_memory)
        .ok_or_else(|| format_err!("module exports no memory"))
}

fn read(caller: &mut C<'_>, ptr: i32, len: i32) -> Result<Vec<u8>> {
    let mem = memory(caller)?;
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    mem.data(&caller)
        .get(ptr..ptr.saturating_add(len))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| format_err!("guest pointer out of bounds: {ptr}+{len}"))
}

fn read_str(caller: &mut C<'_>, ptr: i32, len: i32) -> Result<String> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len)?).into_owned())
}

fn write(caller: &mut C<'_>, ptr: i32, bytes: &[u8]) -> Result<()> {
    let mem = memory(caller)?;
    let ptr = ptr as u32 as usize;
    mem.data_mut(&mut *caller)
        .get_mut(ptr..ptr.saturating_add(bytes.len()))
        .ok_or_else(|| format_err!("guest pointer out of bounds: {ptr}"))?
        .copy_from_slice(bytes);
    Ok(())
}

fn write_u32(caller: &mut C<'_>, ptr: i32, v: u32) -> Result<()> {
    write(caller, ptr, &v.to_le_bytes())
}

/// Copies `data` into guest memory allocated with `proxy_on_memory_allocate` and stores the
/// pointer and size at `ptr_ptr`/`size_ptr` (empty data: null pointer, size 0, like Envoy).
fn return_bytes(caller: &mut C<'_>, data: &[u8], ptr_ptr: i32, size_ptr: i32) -> Result<()> {
    let mut addr = 0u32;
    if !data.is_empty() {
        let alloc = caller
            .get_export("proxy_on_memory_allocate")
            .and_then(Extern::into_func)
            .ok_or_else(|| format_err!("module exports no proxy_on_memory_allocate"))?
            .typed::<i32, i32>(&*caller)?;
        let len = i32::try_from(data.len()).map_err(|_| format_err!("value too large"))?;
        let p = alloc.call(&mut *caller, len)?;
        if p == 0 {
            return Err(format_err!("proxy_on_memory_allocate({len}) returned null"));
        }
        write(caller, p, data)?;
        addr = p as u32;
    }
    write_u32(caller, ptr_ptr, addr)?;
    write_u32(
        caller,
        size_ptr,
        u32::try_from(data.len()).unwrap_or(u32::MAX),
    )
}

/// Counts one host call of the running callback on its stream (by filter), for the tests that
/// hold the filters to their number of VM crossings per request.
fn count_call(c: &mut C<'_>, name: &'static str) {
    if c.data().fuel_trace.is_some() {
        let now = c.get_fuel().unwrap_or(0);
        let spent = c.data().fuel_trace.map_or(0, |mark| mark.saturating_sub(now));
        eprintln!("duo-harness fuel {:>9} ops, then {name}", spent);
        c.data_mut().fuel_trace = Some(now);
    }
    if let Some((core, stage)) = c.data().stream() {
        core.record_host_call(stage, name);
    }
}

fn st(s: Status) -> Result<i32> {
    Ok(s as i32)
}

fn lower(k: &[u8]) -> String {
    String::from_utf8_lossy(k).to_ascii_lowercase()
}

/// Which header map a `MapType` names for the effective context.
enum MapRef {
    Stream(Rc<StreamCore>, usize, MapKind),
    CallHeaders,
    CallTrailers,
    None,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum MapKind {
    RequestHeaders,
    RequestTrailers,
    ResponseHeaders,
    ResponseTrailers,
}

fn map_ref(state: &VmState, map_type: i32) -> MapRef {
    let kind = match map_type {
        0 => MapKind::RequestHeaders,
        1 => MapKind::RequestTrailers,
        2 => MapKind::ResponseHeaders,
        3 => MapKind::ResponseTrailers,
        6 => {
            return if state.call_response.is_some() {
                MapRef::CallHeaders
            } else {
                MapRef::None
            };
        }
        7 => {
            return if state.call_response.is_some() {
                MapRef::CallTrailers
            } else {
                MapRef::None
            };
        }
        _ => return MapRef::None,
    };
    match state.stream() {
        Some((core, stage)) => MapRef::Stream(core, stage, kind),
        None => MapRef::None,
    }
}

/// Reads the map (None: not available to this context now).
fn read_map(state: &VmState, map_type: i32) -> Option<Vec<(String, Vec<u8>)>> {
    match map_ref(state, map_type) {
        MapRef::Stream(core, stage, kind) => core.map_for(stage, kind, state.in_log_phase),
        MapRef::CallHeaders => state.call_response.as_ref().map(|r| r.headers.clone()),
        MapRef::CallTrailers => state.call_response.as_ref().map(|r| r.trailers.clone()),
        MapRef::None => None,
    }
}

/// Applies `f` to a writable map; `false` when the map is not available (BadArgument).
/// Whether a test made host call `name` fail for the running stream ([`crate::Stream::fail_host_call`]).
fn refused(state: &VmState, name: &str) -> bool {
    state.stream().is_some_and(|(core, _)| core.host_call_fails(name))
}

fn modify_map(state: &VmState, map_type: i32, f: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> bool {
    match map_ref(state, map_type) {
        MapRef::Stream(core, stage, kind) => core.modify_map(stage, kind, f),
        _ => false,
    }
}

fn buffer_for(state: &VmState, buffer_type: i32) -> Option<Vec<u8>> {
    match buffer_type {
        0 | 1 => {
            let (core, stage) = state.stream()?;
            let dir = if buffer_type == 0 {
                DirKind::Request
            } else {
                DirKind::Response
            };
            Some(core.body_at(stage, dir, state.in_log_phase))
        }
        4 => state.call_response.as_ref().map(|r| r.body.clone()),
        6 => Some(state.vm_config.clone()),
        7 => Some(state.plugin_config.clone()),
        _ => None,
    }
}

/// Envoy's property lookup: stream presets and derived stream attributes, then the plugin
/// tokens, then filter state `wasm.<name>`, then host-wide presets.
fn get_property(state: &VmState, path: &[String]) -> Option<Vec<u8>> {
    let (first, rest) = path.split_first()?;
    let walk = |root: &PropValue| -> Option<Vec<u8>> {
        let mut v = root.child(first)?;
        for part in rest {
            v = v.child(part)?;
        }
        Some(v.serialize())
    };
    let stream = state.stream();
    if let Some(v) = stream
        .as_ref()
        .and_then(|(core, stage)| core.property(*stage, path))
    {
        return Some(v);
    }
    match (first.as_str(), rest.is_empty()) {
        ("plugin_name", true) => return Some(state.plugin_name.as_bytes().to_vec()),
        ("plugin_root_id", true) => return Some(state.root_id.as_bytes().to_vec()),
        ("plugin_vm_id", true) => return Some(state.vm_id.as_bytes().to_vec()),
        _ => {}
    }
    let host = state.host.borrow();
    walk(&host.properties)
}

pub(crate) fn linker(engine: &Engine) -> Result<Linker<VmState>> {
    let mut l: Linker<VmState> = Linker::new(engine);
    let env = "env";

    l.func_wrap(
        env,
        "proxy_log",
        |mut c: C<'_>, level: i32, ptr: i32, len: i32| -> Result<i32> {
            count_call(&mut c, "proxy_log");
            let msg = read_str(&mut c, ptr, len)?;
            c.data().log(LogLevel::from_raw(level), msg);
            st(Status::Ok)
        },
    )?;
    l.func_wrap(
        env,
        "proxy_get_log_level",
        |mut c: C<'_>, ret: i32| -> Result<i32> {
            count_call(&mut c, "proxy_get_log_level");
            let level = c.data().host.borrow().log_level as u32;
            write_u32(&mut c, ret, level)?;
            st(Status::Ok)
        },
    )?;
    l.func_wrap(
        env,
        "proxy_get_current_time_nanoseconds",
        |mut c: C<'_>, ret: i32| -> Result<i32> {
            count_call(&mut c, "proxy_get_current_time_nanoseconds");
            let now = c.data().host.borrow().now_nanos;
            write(&mut c, ret, &now.to_le_bytes())?;
            st(Status::Ok)
        },
    )?;
    l.func_wrap(
        env,
        "proxy_set_tick_period_milliseconds",
        |mut c: C<'_>, period: i32| -> Result<i32> {
            count_call(&mut c, "proxy_set_tick_period_milliseconds");
            c.data_mut().tick_period_ms = period as u32;
            st(Status::Ok)
        },
    )?;
    l.func_wrap(
        env,
        "proxy_get_buffer_bytes",
        |mut c: C<'_>, ty: i32, start: i32, max: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            count_call(&mut c, "proxy_get_buffer_bytes");
            let Some(buf) = buffer_for(c.data(), ty) else {
                return st(Status::NotFound);
            };
            let (start, max) = (start as u32 as usize, max as u32 as usize);
            if start >= buf.len() || max == 0 {
                return st(Status::Ok); // Envoy copies nothing: the SDK sees None
            }
            let end = start.saturating_add(max).min(buf.len());
            let slice = buf.get(start..end).map(<[u8]>::to_vec).unwrap_or_default();
            return_bytes(&mut c, &slice, ptr_ptr, size_ptr)?;
            st(Status::Ok)
        },
    )?;
    l.func_wrap(
        env,
        "proxy_set_buffer_bytes",
        |mut c: C<'_>, ty: i32, start: i32, size: i32, ptr: i32, len: i32| -> Result<i32> {
            count_call(&mut c, "proxy_set_buffer_bytes");
            let data = read(&mut c, ptr, len)?;
            if ty != 0 && ty != 1 {
                return st(Status::BadArgument);
            }
            let Some((core, stage)) = c.data().stream() else {
                return st(Status::NotFound);
            };
            if core.host_call_fails("proxy_set_buffer_bytes") {
                return st(Status::NotFound);
            }
            let dir = if ty == 0 {
                DirKind::Request
            } else {
                DirKind::Response
            };
            if core.set_body_at(
                stage,
                dir,
                start as u32 as usize,
                size as u32 as usize,
                &data,
            ) {
                st(Status::Ok)
            } else {
                st(Status::BadArgument)
            }
        },
    )?;
    l.func_wrap(
        env,
        "proxy_get_header_map_pairs",
        |mut c: C<'_>, ty: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            count_call(&mut c, "proxy_get_header_map_pairs");
            let map = read_map(c.data(), ty).unwrap_or_default();
            if map.is_empty() {
                write_u32(&mut c, ptr_ptr, 0)?;
                write_u32(&mut c, size_ptr, 0)?;
                return st(Status::Ok);
            }
            let bytes = encode_pairs(
                &map.iter()
                    .map(|(k, v)| (k.as_bytes(), v.as_slice()))
                    .collect::<Vec<_>>(),
            );
            return_bytes(&mut c, &bytes, ptr_ptr, size_ptr)?;
            st(Status::Ok)
        },
    )?;
    l.func_wrap(
        env,
        "proxy_set_header_map_pairs",
        |mut c: C<'_>, ty: i32, ptr: i32, len: i32| -> Result<i32> {
            count_call(&mut c, "proxy_set_header_map_pairs");
            if refused(c.data(), "proxy_set_header_map_pairs") {
                return st(Status::NotFound);
            }
            let bytes = read(&mut c, ptr, len)?;
            let Some(pairs) = decode_pairs(&bytes) else {
                return st(Status::BadArgument);
            };
            let ok = modify_map(c.data(), ty, |m| {
                *m = pairs.into_iter().map(|(k, v)| (lower(&k), v)).collect();
            });
            st(if ok { Status::Ok } else { Status::BadArgument })
        },
    )?;
    l.func_wrap(
        env,
        "proxy_get_header_map_value",
        |mut c: C<'_>, ty: i32, kp: i32, ks: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            count_call(&mut c, "proxy_get_header_map_value");
            let key = lower(&read(&mut c, kp, ks)?);
            let Some(map) = read_map(c.data(), ty) else {
                return st(if c.data().in_log_phase {
                    Status::NotFound
                } else {
                    Status::BadArgument
                });
            };
            match map.iter().find(|(k, _)| *k == key) {
                Some((_, v)) => {
                    let v = v.clone();
                    return_bytes(&mut c, &v, ptr_ptr, size_ptr)?;
                    st(Status::Ok)
                }
                None => st(Status::NotFound),
            }
        },
    )?;
    l.func_wrap(
        env,
        "proxy_replace_header_map_value",
        |mut c: C<'_>, ty: i32, kp: i32, ks: i32, vp: i32, vs: i32| -> Result<i32> {
            count_call(&mut c, "proxy_replace_header_map_value");
            if refused(c.data(), "proxy_replace_header_map_value") {
                return st(Status::NotFound);
            }
            let key = lower(&read(&mut c, kp, ks)?);
            let value = read(&mut c, vp, vs)?;
            let ok = modify_map(c.data(), ty, |m| {
                // Envoy's setCopy: the first entry takes the value, the others go.
                if let Some(i) = m.iter().position(|(k, _)| *k == key) {
                    if let Some(e) = m.get_mut(i) {
                        e.1 = value;
                    }
                    let mut seen = 0;
                    m.retain(|(k, _)| {
                        if *k == key {
                            seen += 1;
                            seen == 1
                        } else {
                            true
                        }
                    });
                } else {
                    m.push((key, value));
                }
            });
            st(if ok { Status::Ok } else { Status::BadArgument })
        },
    )?;
    l.func_wrap(
        env,
        "proxy_add_header_map_value",
        |mut c: C<'_>, ty: i32, kp: i32, ks: i32, vp: i32, vs: i32| -> Result<i32> {
            count_call(&mut c, "proxy_add_header_map_value");
            if refused(c.data(), "proxy_add_header_map_value") {
                return st(Status::NotFound);
            }
            let key = lower(&read(&mut c, kp, ks)?);
            let value = read(&mut c, vp, vs)?;
            let ok = modify_map(c.data(), ty, |m| m.push((key, value)));
            st(if ok { Status::Ok } else { Status::BadArgument })
        },
    )?;
    l.func_wrap(
        env,
        "proxy_remove_header_map_value",
        |mut c: C<'_>, ty: i32, kp: i32, ks: i32| -> Result<i32> {
            count_call(&mut c, "proxy_remove_header_map_value");
            if refused(c.data(), "proxy_remove_header_map_value") {
                return st(Status::NotFound);
            }
            let key = lower(&read(&mut c, kp, ks)?);
            let ok = modify_map(c.data(), ty, |m| m.retain(|(k, _)| *k != key));
            st(if ok { Status::Ok } else { Status::BadArgument })
        },
    )?;
    l.func_wrap(
        env,
        "proxy_get_property",
        |mut c: C<'_>, pp: i32, ps: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            count_call(&mut c, "proxy_get_property");
            let path = split_path(&read(&mut c, pp, ps)?);
            match get_property(c.data(), &path) {
                Some(v) => {
                    return_bytes(&mut c, &v, ptr_ptr, size_ptr)?;
                    st(Status::Ok)
                }
                None => st(Status::NotFound),
            }
        },
    )?;
    l.func_wrap(
        env,
        "proxy_set_property",
        |mut c: C<'_>, pp: i32, ps: i32, vp: i32, vs: i32| -> Result<i32> {
            count_call(&mut c, "proxy_set_property");
            let raw_path = read(&mut c, pp, ps)?;
            let value = read(&mut c, vp, vs)?;
            // Envoy stores filter state `wasm.<raw path>`; only a stream has filter state.
            let Some((core, stage)) = c.data().stream() else {
                return st(Status::NotFound);
            };
            core.set_filter_state(
                stage,
                String::from_utf8_lossy(&raw_path).into_owned(),
                value,
            );
            st(Status::Ok)
        },
    )?;
    l.func_wrap(
        env,
        "proxy_get_shared_data",
        |mut c: C<'_>,
         kp: i32,
         ks: i32,
         ptr_ptr: i32,
         size_ptr: i32,
         cas_ptr: i32|
         -> Result<i32> {
            count_call(&mut c, "proxy_get_shared_data");
            let key = read_str(&mut c, kp, ks)?;
            let vm_id = c.data().vm_id.clone();
            let entry = c
                .data()
                .host
                .borrow()
                .shared_data
                .get(&(vm_id, key))
                .cloned();
            match entry {
                Some((value, cas)) => {
                    return_bytes(&mut c, &value, ptr_ptr, size_ptr)?;
                    write_u32(&mut c, cas_ptr, cas)?;
                    st(Status::Ok)
                }
                None => st(Status::NotFound),
            }
        },
    )?;
    l.func_wrap(
        env,
        "proxy_set_shared_data",
        |mut c: C<'_>, kp: i32, ks: i32, vp: i32, vs: i32, cas: i32| -> Result<i32> {
            count_call(&mut c, "proxy_set_shared_data");
            let key = read_str(&mut c, kp, ks)?;
            let value = if vp == 0 {
                Vec::new()
            } else {
                read(&mut c, vp, vs)?
            };
            let vm_id = c.data().vm_id.clone();
            let host = c.data().host.clone();
            let mut h = host.borrow_mut();
            let k = (vm_id, key);
            if let Some((_, current)) = h.shared_data.get(&k)
                && cas != 0
                && cas as u32 != *current
            {
                return st(Status::CasMismatch);
            }
            h.next_cas += 1;
            let next = h.next_cas;
            h.shared_data.insert(k, (value, next));
            st(Status::Ok)
        },
    )?;
    l.func_wrap(
        env,
        "proxy_register_shared_queue",
        |mut c: C<'_>, np: i32, ns: i32, ret: i32| -> Result<i32> {
            count_call(&mut c, "proxy_register_shared_queue");
            let name = read_str(&mut c, np, ns)?;
            let (vm_id, label) = (c.data().vm_id.clone(), c.data().label.clone());
            let host = c.data().host.clone();
            let id = {
                let mut h = host.borrow_mut();
                match h
                    .queues
                    .iter()
                    .position(|q| q.vm_id == vm_id && q.name == name)
                {
                    Some(i) => {
                        if let Some(q) = h.queues.get_mut(i) {
                            q.owner = label;
                        }
                        i + 1
                    }
                    None => {
                        h.queues.push(crate::host::Queue {
                            vm_id,
                            name,
                            items: Default::default(),
                            owner: label,
                        });
                        h.queues.len()
                    }
                }
            };
            write_u32(&mut c, ret, id as u32)?;
            st(Status::Ok)
        },
    )?;
    l.func_wrap(
        env,
        "proxy_resolve_shared_queue",
        |mut c: C<'_>, vp: i32, vs: i32, np: i32, ns: i32, ret: i32| -> Result<i32> {
            count_call(&mut c, "proxy_resolve_shared_queue");
            let vm_id = read_str(&mut c, vp, vs)?;
            let name = read_str(&mut c, np, ns)?;
            let found = c
                .data()
                .host
                .borrow()
                .queues
                .iter()
                .position(|q| q.vm_id == vm_id && q.name == name);
            match found {
                Some(i) => {
                    write_u32(&mut c, ret, i as u32 + 1)?;
                    st(Status::Ok)
                }
                None => st(Status::NotFound),
            }
        },
    )?;
    l.func_wrap(
        env,
        "proxy_enqueue_shared_queue",
        |mut c: C<'_>, id: i32, vp: i32, vs: i32| -> Result<i32> {
            count_call(&mut c, "proxy_enqueue_shared_queue");
            let value = if vp == 0 {
                Vec::new()
            } else {
                read(&mut c, vp, vs)?
            };
            let host = c.data().host.clone();
            let mut h = host.borrow_mut();
            let idx = (id as u32 as usize).wrapping_sub(1);
            let Some(q) = h.queues.get_mut(idx) else {
                return st(Status::NotFound);
            };
            q.items.push_back(value);
            let owner = q.owner.clone();
            h.ready_queues.push((owner, id as u32));
            st(Status::Ok)
        },
    )?;
    l.func_wrap(
        env,
        "proxy_dequeue_shared_queue",
        |mut c: C<'_>, id: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            count_call(&mut c, "proxy_dequeue_shared_queue");
            let host = c.data().host.clone();
            let item = {
                let mut h = host.borrow_mut();
                let idx = (id as u32 as usize).wrapping_sub(1);
                let Some(q) = h.queues.get_mut(idx) else {
                    return st(Status::NotFound);
                };
                q.items.pop_front()
            };
            match item {
                Some(v) => {
                    return_bytes(&mut c, &v, ptr_ptr, size_ptr)?;
                    st(Status::Ok)
                }
                None => st(Status::Empty),
            }
        },
    )?;
    l.func_wrap(
        env,
        "proxy_continue_stream",
        |mut c: C<'_>, ty: i32| -> Result<i32> {
            count_call(&mut c, "proxy_continue_stream");
            let dir = match ty {
                0 => DirKind::Request,
                1 => DirKind::Response,
                2 => return st(Status::Ok),
                3 => return st(Status::Unimplemented),
                _ => return st(Status::BadArgument),
            };
            if let Some((core, stage)) = c.data().stream() {
                core.defer(Deferred::Continue { stage, dir });
            }
            st(Status::Ok)
        },
    )?;
    l.func_wrap(
        env,
        "proxy_close_stream",
        |mut c: C<'_>, ty: i32| -> Result<i32> {
            count_call(&mut c, "proxy_close_stream");
            let dir = match ty {
                0 => DirKind::Request,
                1 => DirKind::Response,
                2 | 3 => return st(Status::Ok),
                _ => return st(Status::BadArgument),
            };
            if let Some((core, stage)) = c.data().stream() {
                core.defer(Deferred::Reset { stage, dir });
            }
            st(Status::Ok)
        },
    )?;
    l.func_wrap(
        env,
        "proxy_send_local_response",
        |mut c: C<'_>,
         status: i32,
         dp: i32,
         ds: i32,
         bp: i32,
         bs: i32,
         hp: i32,
         hs: i32,
         grpc: i32|
         -> Result<i32> {
            count_call(&mut c, "proxy_send_local_response");
            let details = read_str(&mut c, dp, ds)?;
            let body = read(&mut c, bp, bs)?;
            let Some(pairs) = decode_pairs(&read(&mut c, hp, hs)?) else {
                return st(Status::BadArgument);
            };
            let headers = pairs
                .into_iter()
                .map(|(k, v)| (lower(&k), String::from_utf8_lossy(&v).into_owned()))
                .collect();
            let Some((core, _)) = c.data().stream() else {
                return st(Status::NotFound);
            };
            let reply = LocalReply {
                status: status as u32,
                details,
                headers,
                body,
                grpc_status: grpc,
                plugin: c.data().label.clone(),
            };
            core.defer(Deferred::LocalReply { reply });
            st(Status::Ok)
        },
    )?;
    l.func_wrap(
        env,
        "proxy_http_call",
        |mut c: C<'_>,
         up: i32,
         us: i32,
         hp: i32,
         hs: i32,
         bp: i32,
         bs: i32,
         tp: i32,
         ts: i32,
         timeout: i32,
         ret: i32|
         -> Result<i32> {
            count_call(&mut c, "proxy_http_call");
            let cluster = read_str(&mut c, up, us)?;
            let Some(headers) = decode_pairs(&read(&mut c, hp, hs)?) else {
                return st(Status::BadArgument);
            };
            let body = read(&mut c, bp, bs)?;
            let Some(trailers) = decode_pairs(&read(&mut c, tp, ts)?) else {
                return st(Status::BadArgument);
            };
            let to_strings = |p: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<(String, String)> {
                p.into_iter()
                    .map(|(k, v)| (lower(&k), String::from_utf8_lossy(&v).into_owned()))
                    .collect()
            };
            let (headers, trailers) = (to_strings(headers), to_strings(trailers));
            if timeout < 0 {
                return st(Status::BadArgument);
            }
            let has = |n: &str| headers.iter().any(|(k, _)| k == n);
            // Envoy refuses a call without :path, :method and a host (:authority).
            if !has(":path") || !has(":method") || !(has(":authority") || has("host")) {
                return st(Status::BadArgument);
            }
            let (label, context_id) = (c.data().label.clone(), c.data().effective_context);
            let host = c.data().host.clone();
            let token = {
                let mut h = host.borrow_mut();
                if let Some(known) = &h.clusters
                    && !known.contains(&cluster)
                {
                    return st(Status::BadArgument);
                }
                h.next_token += 1;
                let token = h.next_token;
                h.http_calls.push(HttpCall {
                    token,
                    plugin: label,
                    context_id,
                    cluster,
                    headers,
                    body,
                    trailers,
                    timeout_ms: timeout as u32,
                    answered: false,
                });
                token
            };
            write_u32(&mut c, ret, token)?;
            st(Status::Ok)
        },
    )?;
    l.func_wrap(
        env,
        "proxy_grpc_call",
        |mut c: C<'_>,
         _a: i32,
         _b: i32,
         _d: i32,
         _e: i32,
         _f: i32,
         _g: i32,
         _h: i32,
         _i: i32,
         _j: i32,
         _k: i32,
         _t: i32,
         _r: i32|
         -> Result<i32> {
            count_call(&mut c, "proxy_grpc_call"); st(Status::Unimplemented) },
    )?;
    l.func_wrap(
        env,
        "proxy_grpc_stream",
        |mut c: C<'_>,
         _a: i32,
         _b: i32,
         _d: i32,
         _e: i32,
         _f: i32,
         _g: i32,
         _h: i32,
         _i: i32,
         _r: i32|
         -> Result<i32> {
            count_call(&mut c, "proxy_grpc_stream"); st(Status::Unimplemented) },
    )?;
    l.func_wrap(
        env,
        "proxy_grpc_send",
        |mut c: C<'_>, _t: i32, _p: i32, _s: i32, _e: i32| -> Result<i32> {
            count_call(&mut c, "proxy_grpc_send");
            st(Status::Unimplemented)
        },
    )?;
    l.func_wrap(
        env,
        "proxy_grpc_cancel",
        |mut c: C<'_>, _t: i32| -> Result<i32> {
            count_call(&mut c, "proxy_grpc_cancel"); st(Status::NotFound) },
    )?;
    l.func_wrap(
        env,
        "proxy_grpc_close",
        |mut c: C<'_>, _t: i32| -> Result<i32> {
            count_call(&mut c, "proxy_grpc_close"); st(Status::NotFound) },
    )?;
    l.func_wrap(
        env,
        "proxy_get_status",
        |mut c: C<'_>, _a: i32, _b: i32, _d: i32| -> Result<i32> {
            count_call(&mut c, "proxy_get_status"); st(Status::NotFound) },
    )?;
    l.func_wrap(
        env,
        "proxy_set_effective_context",
        |mut c: C<'_>, ctx: i32| -> Result<i32> {
            count_call(&mut c, "proxy_set_effective_context");
            let ctx = ctx as u32;
            let known = ctx == c.data().root_context_id || c.data().contexts.contains_key(&ctx);
            if !known {
                return st(Status::BadArgument);
            }
            c.data_mut().effective_context = ctx;
            st(Status::Ok)
        },
    )?;
    l.func_wrap(
        env,
        "proxy_call_foreign_function",
        |mut c: C<'_>, np: i32, ns: i32, ap: i32, as_: i32, _rp: i32, _rs: i32| -> Result<i32> {
            count_call(&mut c, "proxy_call_foreign_function");
            let name = read_str(&mut c, np, ns)?;
            let args = read(&mut c, ap, as_)?;
            c.data_mut().foreign_calls.push((name.clone(), args));
            if let Some((core, _)) = c.data().stream() {
                core.record_foreign_call(&name);
            }
            match name.as_str() {
                // Envoy 1.33+: no result bytes; the caller gets Ok(None).
                "clear_route_cache" => st(Status::Ok),
                _ => st(Status::NotFound),
            }
        },
    )?;
    l.func_wrap(env, "proxy_done", |mut c: C<'_>| -> Result<i32> {
        count_call(&mut c, "proxy_done");
        c.data_mut().done_calls += 1;
        st(Status::Ok)
    })?;
    l.func_wrap(
        env,
        "proxy_define_metric",
        |mut c: C<'_>, ty: i32, np: i32, ns: i32, ret: i32| -> Result<i32> {
            count_call(&mut c, "proxy_define_metric");
            let kind = match ty {
                0 => MetricType::Counter,
                1 => MetricType::Gauge,
                2 => MetricType::Histogram,
                _ => return st(Status::BadArgument),
            };
            let name = read_str(&mut c, np, ns)?;
            let host = c.data().host.clone();
            let id = {
                let mut h = host.borrow_mut();
                match h.metric_index(&name) {
                    Some(i) => i + 1,
                    None => {
                        h.metrics.push(Metric {
                            name,
                            kind,
                            value: 0,
                            samples: Vec::new(),
                        });
                        h.metrics.len()
                    }
                }
            };
            write_u32(&mut c, ret, id as u32)?;
            st(Status::Ok)
        },
    )?;
    l.func_wrap(
        env,
        "proxy_increment_metric",
        |mut c: C<'_>, id: i32, offset: i64| -> Result<i32> {
            count_call(&mut c, "proxy_increment_metric");
            let host = c.data().host.clone();
            let mut h = host.borrow_mut();
            let Some(m) = h.metrics.get_mut((id as u32 as usize).wrapping_sub(1)) else {
                return st(Status::NotFound);
            };
            match m.kind {
                MetricType::Counter if offset > 0 => m.value = m.value.saturating_add(offset),
                MetricType::Gauge => m.value = m.value.saturating_add(offset),
                _ => return st(Status::BadArgument),
            }
            st(Status::Ok)
        },
    )?;
    l.func_wrap(
        env,
        "proxy_record_metric",
        |mut c: C<'_>, id: i32, value: i64| -> Result<i32> {
            count_call(&mut c, "proxy_record_metric");
            let host = c.data().host.clone();
            let mut h = host.borrow_mut();
            let Some(m) = h.metrics.get_mut((id as u32 as usize).wrapping_sub(1)) else {
                return st(Status::NotFound);
            };
            match m.kind {
                MetricType::Counter => m.value = m.value.saturating_add(value),
                MetricType::Gauge => m.value = value,
                MetricType::Histogram => m.samples.push(value as u64),
            }
            st(Status::Ok)
        },
    )?;
    l.func_wrap(
        env,
        "proxy_get_metric",
        |mut c: C<'_>, id: i32, ret: i32| -> Result<i32> {
            count_call(&mut c, "proxy_get_metric");
            let found = {
                let h = c.data().host.borrow();
                h.metrics
                    .get((id as u32 as usize).wrapping_sub(1))
                    .map(|m| (m.kind, m.value))
            };
            match found {
                Some((MetricType::Histogram, _)) => st(Status::BadArgument),
                Some((_, v)) => {
                    write(&mut c, ret, &(v as u64).to_le_bytes())?;
                    st(Status::Ok)
                }
                None => st(Status::NotFound),
            }
        },
    )?;

    // WASI preview1: the handful a wasm32-wasip1 Rust cdylib imports.
    let wasi = "wasi_snapshot_preview1";
    l.func_wrap(
        wasi,
        "random_get",
        |mut c: C<'_>, ptr: i32, len: i32| -> Result<i32> {
            count_call(&mut c, "random_get");
            let host = c.data().host.clone();
            let bytes: Vec<u8> = {
                let mut h = host.borrow_mut();
                (0..len as u32).map(|_| h.next_random()).collect()
            };
            write(&mut c, ptr, &bytes)?;
            Ok(0)
        },
    )?;
    l.func_wrap(
        wasi,
        "environ_sizes_get",
        |mut c: C<'_>, count: i32, size: i32| -> Result<i32> {
            count_call(&mut c, "environ_sizes_get");
            write_u32(&mut c, count, 0)?;
            write_u32(&mut c, size, 0)?;
            Ok(0)
        },
    )?;
    l.func_wrap(
        wasi,
        "environ_get",
        |mut c: C<'_>, _a: i32, _b: i32| -> Result<i32> {
            count_call(&mut c, "environ_get"); Ok(0) },
    )?;
    l.func_wrap(
        wasi,
        "args_sizes_get",
        |mut c: C<'_>, count: i32, size: i32| -> Result<i32> {
            count_call(&mut c, "args_sizes_get");
            write_u32(&mut c, count, 0)?;
            write_u32(&mut c, size, 0)?;
            Ok(0)
        },
    )?;
    l.func_wrap(
        wasi,
        "args_get",
        |mut c: C<'_>, _a: i32, _b: i32| -> Result<i32> {
            count_call(&mut c, "args_get"); Ok(0) },
    )?;
    l.func_wrap(
        wasi,
        "clock_time_get",
        |mut c: C<'_>, _id: i32, _precision: i64, ret: i32| -> Result<i32> {
            count_call(&mut c, "clock_time_get");
            let now = c.data().host.borrow().now_nanos;
            write(&mut c, ret, &now.to_le_bytes())?;
            Ok(0)
        },
    )?;
    l.func_wrap(wasi, "proc_exit", |_c: C<'_>, code: i32| -> Result<()> {
        Err(format_err!("guest called proc_exit({code})"))
    })?;
    l.func_wrap(wasi, "sched_yield", |_c: C<'_>| -> Result<i32> { Ok(0) })?;
    l.func_wrap(
        wasi,
        "fd_write",
        |mut c: C<'_>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32| -> Result<i32> {
            count_call(&mut c, "fd_write");
            let mut total = 0u32;
            let mut out = Vec::new();
            for i in 0..iovs_len {
                let iov = read(&mut c, iovs.wrapping_add(i * 8), 8)?;
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                out.extend(read(&mut c, ptr, len)?);
                total = total.wrapping_add(len as u32);
            }
            let level = if fd == 2 {
                LogLevel::Error
            } else {
                LogLevel::Info
            };
            {
                let data = c.data_mut();
                data.stdout.extend_from_slice(&out);
                while let Some(nl) = data.stdout.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = data.stdout.drain(..=nl).collect();
                    let text = String::from_utf8_lossy(&line).trim_end().to_string();
                    data.log(level, format!("fd{fd}: {text}"));
                }
            }
            write_u32(&mut c, nwritten, total)?;
            Ok(0)
        },
    )?;
    Ok(l)
}
