//! The C ABI. Strings returned by these functions are owned by the caller and must be freed
//! with `shoal_string_free`. A handle is valid from `shoal_client_start` until
//! `shoal_client_stop`, which frees it. Every function is safe to call with NULL.
//!
//! ```c
//! ShoalClient *c = shoal_client_start("{\"url\":\"http://cdn/live/demo/master.m3u8\",\"api\":\"http://api\"}");
//! if (!c) { char *e = shoal_last_error(); fprintf(stderr, "%s\n", e); shoal_string_free(e); }
//! char *url = shoal_client_local_url(c);   // give it to the player
//! char *stats = shoal_client_stats_json(c);
//! char *report = shoal_client_stop(c);     // c is gone after this
//! ```

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::runner::Runner;

/// A running Shoal client (opaque).
pub struct ShoalClient {
    runner: Runner,
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn set_error(e: impl Into<String>) {
    LAST_ERROR.with(|l| *l.borrow_mut() = e.into());
}

fn to_c(s: &str) -> *mut c_char {
    // Interior NULs cannot occur in our JSON and URLs; strip them rather than fail.
    CString::new(s.replace('\0', "")).map_or(std::ptr::null_mut(), CString::into_raw)
}

/// Start a client. `config_json` is a UTF-8 JSON object: `url` (the master playlist, required),
/// `api`, `token`, `listen`, `headless`, `engine`, ... (see docs/native-sdk.md). Returns NULL
/// on error; `shoal_last_error` says why.
///
/// # Safety
/// `config_json` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn shoal_client_start(config_json: *const c_char) -> *mut ShoalClient {
    if config_json.is_null() {
        set_error("config_json is NULL");
        return std::ptr::null_mut();
    }
    // SAFETY: the caller promises a NUL-terminated string.
    let text = match unsafe { CStr::from_ptr(config_json) }.to_str() {
        Ok(t) => t.to_owned(),
        Err(_) => {
            set_error("config_json is not UTF-8");
            return std::ptr::null_mut();
        }
    };
    match catch_unwind(|| Runner::start(&text)) {
        Ok(Ok(runner)) => Box::into_raw(Box::new(ShoalClient { runner })),
        Ok(Err(e)) => {
            set_error(format!("{e:#}"));
            std::ptr::null_mut()
        }
        Err(_) => {
            set_error("internal error (panic) while starting");
            std::ptr::null_mut()
        }
    }
}

/// The URL to give the player (`http://127.0.0.1:PORT/master.m3u8`). Free it.
///
/// # Safety
/// `client` must be NULL or a live handle from `shoal_client_start`.
#[no_mangle]
pub unsafe extern "C" fn shoal_client_local_url(client: *const ShoalClient) -> *mut c_char {
    // SAFETY: the caller promises a live handle or NULL.
    match unsafe { client.as_ref() } {
        Some(c) => to_c(c.runner.local_url()),
        None => std::ptr::null_mut(),
    }
}

/// The client's counters as a JSON object (bytes from CDN and peers, P2P share, peers,
/// verification, ...). Free it.
///
/// # Safety
/// `client` must be NULL or a live handle from `shoal_client_start`.
#[no_mangle]
pub unsafe extern "C" fn shoal_client_stats_json(client: *const ShoalClient) -> *mut c_char {
    // SAFETY: the caller promises a live handle or NULL.
    let Some(c) = (unsafe { client.as_ref() }) else { return std::ptr::null_mut() };
    match catch_unwind(AssertUnwindSafe(|| c.runner.stats_json())) {
        Ok(s) => to_c(&s),
        Err(_) => std::ptr::null_mut(),
    }
}

/// Stop the client, free the handle, and return the final report as JSON (free it).
///
/// # Safety
/// `client` must be NULL or a live handle from `shoal_client_start`; it is invalid afterwards.
#[no_mangle]
pub unsafe extern "C" fn shoal_client_stop(client: *mut ShoalClient) -> *mut c_char {
    if client.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: the caller hands back ownership of a handle made by Box::into_raw.
    let mut c = unsafe { Box::from_raw(client) };
    let report = catch_unwind(AssertUnwindSafe(|| c.runner.stop()));
    drop(c);
    match report {
        Ok(r) => to_c(&serde_json::to_string(&r).unwrap_or_else(|_| "{}".into())),
        Err(_) => std::ptr::null_mut(),
    }
}

/// Why the last call on this thread failed ("" if none). Free it.
#[no_mangle]
pub extern "C" fn shoal_last_error() -> *mut c_char {
    LAST_ERROR.with(|l| to_c(&l.borrow()))
}

/// Free a string returned by this library.
///
/// # Safety
/// `s` must be NULL or a string returned by this library, not freed before.
#[no_mangle]
pub unsafe extern "C" fn shoal_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: made by CString::into_raw in this library.
        drop(unsafe { CString::from_raw(s) });
    }
}

/// The library version (static; do not free).
#[no_mangle]
pub extern "C" fn shoal_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
