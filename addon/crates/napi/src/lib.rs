//! The napi-rs addon loaded by the Node daemon. It must never fork: see DESIGN.md §3.

use napi_derive::napi;

/// Version of the native code, compared with the TypeScript package and `tsbox-sandbox`.
#[napi]
pub fn version() -> String {
    tsbox_sys::VERSION.to_string()
}
