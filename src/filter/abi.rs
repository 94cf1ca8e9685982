//! The raw proxy-wasm ABI: every host call the filter makes directly, with every status handled.
//! The SDK's wrappers panic on any status they do not expect, and its header read panics on a
//! value that is not UTF-8 (HTTP/1.1 lets clients send such bytes); a panic traps the VM, and a
//! trapped VM fails every later request on its worker. Only `dispatch_http_call` stays with the
//! SDK: its dispatcher must register the token to route the answer (and it handles the statuses
//! Envoy returns for it).
//!
//! Everything `unsafe` in the filter is in this file.

use proxy_wasm::types::{BufferType, LogLevel, MapType};

use dcr_guard_core::shared::StoreError;

/// proxy-wasm status codes (the ABI's `WasmResult`) that callers tell apart.
const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const CAS_MISMATCH: u32 = 8;
/// `proxy_dequeue_shared_queue`: nothing queued.
const EMPTY: u32 = 7;
/// `proxy_define_metric`'s metric type for a histogram.
const METRIC_HISTOGRAM: u32 = 2;
/// `proxy_define_metric`'s metric type for a counter.
const METRIC_COUNTER: u32 = 0;
const METRIC_GAUGE: u32 = 1;
/// `proxy_continue_stream`'s stream type for the HTTP request.
const STREAM_REQUEST: u32 = 0;
/// `proxy_send_local_response`'s gRPC status argument for "not a gRPC reply".
const NO_GRPC_STATUS: i32 = -1;
/// `proxy_set_shared_data`'s CAS argument for "no compare" (Envoy: overwrite or create; Kong:
/// create only).
const NO_CAS: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_get_status(
        return_code: *mut u32,
        return_message_data: *mut *mut u8,
        return_message_size: *mut usize,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_register_shared_queue(
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_enqueue_shared_queue(queue_id: u32, value_data: *const u8, value_size: usize) -> u32;
    fn proxy_dequeue_shared_queue(
        queue_id: u32,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
}

/// The proxy-wasm header map encoding: count, then (key size, value size) pairs, then each
/// key and value followed by a NUL.
fn serialize(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (k, v) in headers {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

pub fn send_local_response(
    status: u32,
    details: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), u32> {
    let map = serialize(headers);
    // SAFETY: every pointer/length pair describes a live slice for the duration of the call.
    let rc = unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            map.as_ptr(),
            map.len(),
            NO_GRPC_STATUS,
        )
    };
    if rc == OK {
        Ok(())
    } else {
        Err(rc)
    }
}

pub fn set_effective_context(ctx: u32) -> Result<(), u32> {
    // SAFETY: plain value argument.
    match unsafe { proxy_set_effective_context(ctx) } {
        OK => Ok(()),
        rc => Err(rc),
    }
}

pub fn set_tick_period(period: std::time::Duration) -> Result<(), u32> {
    let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    // SAFETY: plain value argument.
    match unsafe { proxy_set_tick_period_milliseconds(ms) } {
        OK => Ok(()),
        rc => Err(rc),
    }
}

/// Shared data get: every status handled (the SDK wrapper panics on unexpected ones).
pub fn get_shared(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    // SAFETY: the host writes a pointer it allocated through this module's allocator
    // (`proxy_on_memory_allocate`, exported by the SDK) and its size; ownership passes to us.
    let rc =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match rc {
        OK => {
            let value = if data.is_null() {
                None
            } else {
                // SAFETY: see above; `size` bytes were allocated as a Vec<u8> of that capacity.
                Some(unsafe { Vec::from_raw_parts(data, size, size) })
            };
            Ok((value, (cas != 0).then_some(cas)))
        }
        NOT_FOUND => Ok((None, None)),
        other => Err(StoreError::Other(format!(
            "shared data read failed (status {other})"
        ))),
    }
}

/// Shared data set with compare-and-swap (`None` = 0).
pub fn set_shared(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
    // SAFETY: both slices are live for the duration of the call.
    let rc = unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(NO_CAS),
        )
    };
    match rc {
        OK => Ok(()),
        CAS_MISMATCH => Err(StoreError::CasMismatch),
        other => Err(StoreError::Other(format!(
            "shared data write failed (status {other})"
        ))),
    }
}

/// Bytes the host handed over: allocated through this module's allocator
/// (`proxy_on_memory_allocate`, exported by the SDK) as `size` bytes; ownership passes to us.
fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        None
    } else {
        // SAFETY: see above.
        Some(unsafe { Vec::from_raw_parts(data, size, size) })
    }
}

fn status(rc: u32) -> Result<(), u32> {
    if rc == OK {
        Ok(())
    } else {
        Err(rc)
    }
}

/// Register a shared queue of this VM; the host calls the root context's `on_queue_ready` on
/// this worker's thread whenever something is enqueued.
pub fn register_queue(name: &str) -> Result<u32, u32> {
    let mut id: u32 = 0;
    // SAFETY: the name is live for the call; the host writes one u32.
    status(unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

/// Enqueue `value` on a shared queue.
pub fn enqueue(queue: u32, value: &[u8]) -> Result<(), u32> {
    // SAFETY: the value is live for the call.
    status(unsafe { proxy_enqueue_shared_queue(queue, value.as_ptr(), value.len()) })
}

/// Dequeue one item; `Ok(None)` when the queue is empty.
pub fn dequeue(queue: u32) -> Result<Option<Vec<u8>>, u32> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer it allocated through this module's allocator and its
    // size (see `take`).
    match unsafe { proxy_dequeue_shared_queue(queue, &mut data, &mut size) } {
        OK => Ok(take(data, size).or(Some(Vec::new()))),
        EMPTY => Ok(None),
        rc => Err(rc),
    }
}

pub fn log(level: LogLevel, message: &str) -> Result<(), u32> {
    // SAFETY: `message` is live for the duration of the call.
    status(unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) })
}

/// A buffer's bytes; `Ok(None)` when there are none or the host has no such buffer now.
pub fn get_buffer(
    buffer_type: BufferType,
    start: usize,
    max: usize,
) -> Result<Option<Vec<u8>>, u32> {
    let (mut data, mut size): (*mut u8, usize) = (std::ptr::null_mut(), 0);
    // SAFETY: the host writes a pointer and size it allocated for us (see `take`).
    let rc =
        unsafe { proxy_get_buffer_bytes(buffer_type as u32, start, max, &mut data, &mut size) };
    match rc {
        OK => Ok(take(data, size)),
        NOT_FOUND => Ok(None),
        other => Err(other),
    }
}

/// A header's value; bytes that are not UTF-8 become U+FFFD (never a panic).
pub fn get_header(map_type: MapType, name: &str) -> Result<Option<String>, u32> {
    let (mut data, mut size): (*mut u8, usize) = (std::ptr::null_mut(), 0);
    // SAFETY: `name` is live for the call; the host writes a pointer and size it allocated
    // for us (see `take`).
    let rc = unsafe {
        proxy_get_header_map_value(
            map_type as u32,
            name.as_ptr(),
            name.len(),
            &mut data,
            &mut size,
        )
    };
    match rc {
        OK => Ok(Some(
            take(data, size)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default(),
        )),
        NOT_FOUND => Ok(None),
        other => Err(other),
    }
}

/// The lower-case names of every header in the map, one entry per field line (a repeated
/// header is listed as often as it was sent). Decoded from the proxy-wasm map encoding (see
/// `serialize`) with every length checked.
pub fn get_header_names(map_type: MapType) -> Result<Vec<String>, u32> {
    let (mut data, mut size): (*mut u8, usize) = (std::ptr::null_mut(), 0);
    // SAFETY: the host writes a pointer and size it allocated for us (see `take`).
    let rc = unsafe { proxy_get_header_map_pairs(map_type as u32, &mut data, &mut size) };
    if rc != OK {
        return Err(rc);
    }
    let bytes = take(data, size).unwrap_or_default();
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let count = u32_at(0).unwrap_or(0);
    let mut names = Vec::new();
    let mut data_at = 4usize.saturating_add(count.saturating_mul(8));
    for i in 0..count {
        let (Some(k), Some(v)) = (u32_at(4 + i * 8), u32_at(8 + i * 8)) else {
            break;
        };
        let Some(name) = bytes.get(data_at..data_at.saturating_add(k)) else {
            break;
        };
        names.push(String::from_utf8_lossy(name).to_ascii_lowercase());
        data_at = data_at
            .saturating_add(k)
            .saturating_add(v)
            .saturating_add(2);
    }
    Ok(names)
}

/// Set (`Some`) or remove (`None`) a header.
pub fn set_header(map_type: MapType, name: &str, value: Option<&str>) -> Result<(), u32> {
    // SAFETY: `name` and `value` are live for the duration of the call.
    status(unsafe {
        match value {
            Some(v) => proxy_replace_header_map_value(
                map_type as u32,
                name.as_ptr(),
                name.len(),
                v.as_ptr(),
                v.len(),
            ),
            None => proxy_remove_header_map_value(map_type as u32, name.as_ptr(), name.len()),
        }
    })
}

/// The proxy-wasm property path encoding: the segments joined by NUL.
fn property_path(path: &[&str]) -> Vec<u8> {
    path.join("\0").into_bytes()
}

pub fn get_property(path: &[&str]) -> Result<Option<Vec<u8>>, u32> {
    let path = property_path(path);
    let (mut data, mut size): (*mut u8, usize) = (std::ptr::null_mut(), 0);
    // SAFETY: `path` is live for the call; the host writes a pointer and size it allocated
    // for us (see `take`).
    let rc = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    match rc {
        OK => Ok(take(data, size)),
        NOT_FOUND => Ok(None),
        other => Err(other),
    }
}

pub fn set_property(path: &[&str], value: &[u8]) -> Result<(), u32> {
    let path = property_path(path);
    // SAFETY: both slices are live for the duration of the call.
    status(unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) })
}

/// The status message of the gRPC call being delivered (lossy UTF-8; the SDK's wrapper panics on
/// bytes that are not UTF-8).
pub fn grpc_status_message() -> Result<String, u32> {
    let mut code: u32 = 0;
    let (mut data, mut size): (*mut u8, usize) = (std::ptr::null_mut(), 0);
    // SAFETY: the host writes a code, and a pointer and size it allocated for us (see `take`).
    let rc = unsafe { proxy_get_status(&mut code, &mut data, &mut size) };
    status(rc)?;
    Ok(take(data, size)
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default())
}

/// The host's clock, nanoseconds since the Unix epoch.
pub fn now_nanos() -> Result<u64, u32> {
    let mut t: u64 = 0;
    // SAFETY: the host writes one u64.
    let rc = unsafe { proxy_get_current_time_nanoseconds(&mut t) };
    status(rc).map(|()| t)
}

/// A counter's id.
pub fn define_counter(name: &str) -> Result<u32, u32> {
    let mut id: u32 = 0;
    // SAFETY: `name` is live for the call; the host writes one u32.
    let rc = unsafe { proxy_define_metric(METRIC_COUNTER, name.as_ptr(), name.len(), &mut id) };
    status(rc).map(|()| id)
}

/// A histogram's id.
pub fn define_histogram(name: &str) -> Result<u32, u32> {
    let mut id: u32 = 0;
    // SAFETY: `name` is live for the call; the host writes one u32.
    let rc = unsafe { proxy_define_metric(METRIC_HISTOGRAM, name.as_ptr(), name.len(), &mut id) };
    status(rc).map(|()| id)
}

/// A gauge's id.
pub fn define_gauge(name: &str) -> Result<u32, u32> {
    let mut id: u32 = 0;
    // SAFETY: `name` is live for the call; the host writes one u32.
    let rc = unsafe { proxy_define_metric(METRIC_GAUGE, name.as_ptr(), name.len(), &mut id) };
    status(rc).map(|()| id)
}

/// Record one value in a histogram, or set a gauge.
pub fn record(id: u32, value: u64) -> Result<(), u32> {
    // SAFETY: plain value arguments.
    status(unsafe { proxy_record_metric(id, value) })
}

pub fn increment(id: u32, by: i64) -> Result<(), u32> {
    // SAFETY: plain value arguments.
    status(unsafe { proxy_increment_metric(id, by) })
}

/// Let the held request go on.
pub fn resume_request() -> Result<(), u32> {
    // SAFETY: plain value argument.
    status(unsafe { proxy_continue_stream(STREAM_REQUEST) })
}

pub fn set_buffer(
    buffer_type: BufferType,
    start: usize,
    size: usize,
    value: &[u8],
) -> Result<(), u32> {
    // SAFETY: `value` is a live slice for the duration of the call.
    let rc = unsafe {
        proxy_set_buffer_bytes(buffer_type as u32, start, size, value.as_ptr(), value.len())
    };
    status(rc)
}
