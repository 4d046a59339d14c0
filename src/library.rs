//! Run-time loading of libnftables.
//!
//! The addon does not link against libnftables: it opens `libnftables.so.1` with `dlopen` when an
//! instance is created, so it builds without the -dev headers and a host without the library gets a
//! typed `LIBNFTABLES_UNAVAILABLE` error instead of a failed `require()`.

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::sync::Arc;

use libloading::Library;

/// Environment variable that overrides the library path (used by tests and unusual installs).
pub const LIBRARY_PATH_ENV: &str = "NFTABLES_NODE_LIBNFTABLES";
/// The soname every distribution ships.
pub const DEFAULT_LIBRARY: &str = "libnftables.so.1";
/// What to install, said in every `LIBNFTABLES_UNAVAILABLE` message.
pub const INSTALL_HINT: &str =
  "install libnftables (Debian/Ubuntu: apt-get install libnftables1; Fedora: dnf install nftables; Alpine: apk add nftables)";

pub type NftCtx = c_void;

/// The libnftables entry points the binding uses (all present since libnftables 0.9.3).
pub struct Libnftables {
  pub ctx_new: unsafe extern "C" fn(c_uint) -> *mut NftCtx,
  pub ctx_free: unsafe extern "C" fn(*mut NftCtx),
  pub buffer_output: unsafe extern "C" fn(*mut NftCtx) -> c_int,
  pub buffer_error: unsafe extern "C" fn(*mut NftCtx) -> c_int,
  pub get_output_buffer: unsafe extern "C" fn(*mut NftCtx) -> *const c_char,
  pub get_error_buffer: unsafe extern "C" fn(*mut NftCtx) -> *const c_char,
  pub output_set_flags: unsafe extern "C" fn(*mut NftCtx, c_uint),
  pub set_dry_run: unsafe extern "C" fn(*mut NftCtx, bool),
  pub run_cmd_from_buffer: unsafe extern "C" fn(*mut NftCtx, *const c_char) -> c_int,
  pub run_cmd_from_filename: unsafe extern "C" fn(*mut NftCtx, *const c_char) -> c_int,
  /// Keeps the shared object mapped for as long as the function pointers above are used.
  _library: Library,
}

/// Output flags of `nft_ctx_output_set_flags` (values from `<nftables/libnftables.h>`).
pub mod output_flags {
  pub const STATELESS: u32 = 1 << 2;
  pub const HANDLE: u32 = 1 << 3;
  pub const JSON: u32 = 1 << 4;
  pub const ECHO: u32 = 1 << 5;
  pub const NUMERIC_ALL: u32 = (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10);
  pub const TERSE: u32 = 1 << 11;
}

impl Libnftables {
  /// Opens the library at `path`, or at `$NFTABLES_NODE_LIBNFTABLES`, or the default soname.
  /// `dlopen` reference-counts, so opening it once per instance costs microseconds after the first.
  pub fn open(path: Option<&str>) -> Result<Arc<Self>, String> {
    let env_path = std::env::var(LIBRARY_PATH_ENV).ok().filter(|p| !p.is_empty());
    let path = path
      .map(str::to_owned)
      .or(env_path)
      .unwrap_or_else(|| DEFAULT_LIBRARY.to_owned());
    // SAFETY: loading libnftables runs only its ELF constructors, which set up no global state
    // that conflicts with Node; the library is a plain C library with no initialisation order needs.
    let library = unsafe { Library::new(&path) }.map_err(|e| {
      format!(
        "cannot load libnftables from '{path}': {}; {INSTALL_HINT}",
        describe(&e)
      )
    })?;
    Ok(Arc::new(Self {
      ctx_new: load_symbol(&library, "nft_ctx_new", &path)?,
      ctx_free: load_symbol(&library, "nft_ctx_free", &path)?,
      buffer_output: load_symbol(&library, "nft_ctx_buffer_output", &path)?,
      buffer_error: load_symbol(&library, "nft_ctx_buffer_error", &path)?,
      get_output_buffer: load_symbol(&library, "nft_ctx_get_output_buffer", &path)?,
      get_error_buffer: load_symbol(&library, "nft_ctx_get_error_buffer", &path)?,
      output_set_flags: load_symbol(&library, "nft_ctx_output_set_flags", &path)?,
      set_dry_run: load_symbol(&library, "nft_ctx_set_dry_run", &path)?,
      run_cmd_from_buffer: load_symbol(&library, "nft_run_cmd_from_buffer", &path)?,
      run_cmd_from_filename: load_symbol(&library, "nft_run_cmd_from_filename", &path)?,
      _library: library,
    }))
  }
}

/// Looks up one function; the caller's field type fixes `T`.
fn load_symbol<T: Copy>(library: &Library, name: &str, path: &str) -> Result<T, String> {
  let c_name = format!("{name}\0");
  // SAFETY: every `T` requested is the function pointer type of the libnftables.h prototype of
  // `name`, and the returned pointer is only used while the `Library` stored beside it is alive.
  let symbol = unsafe { library.get::<T>(c_name.as_bytes()) }
    .map_err(|e| format!("'{path}' is not a usable libnftables ({name}): {e}; {INSTALL_HINT}"))?;
  Ok(*symbol)
}

/// libloading's Display says only "dlopen failed"; dlerror's text is in the source.
fn describe(error: &libloading::Error) -> String {
  match std::error::Error::source(error) {
    Some(cause) => format!("{error}: {cause}"),
    None => error.to_string(),
  }
}
