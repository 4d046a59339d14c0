//! One libnftables context (`struct nft_ctx`), owned by exactly one worker thread.

use std::ffi::{CStr, CString};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use crate::library::{output_flags, Libnftables, NftCtx};

/// What one libnftables call produced: its return code and both buffers.
pub struct RunOutput {
  pub ok: bool,
  pub output: String,
  pub error: String,
  /// The path libnftables read the input from, if it was a file (it appears in `error`).
  pub input_name: Option<String>,
}

/// A libnftables context with buffered output and error streams.
///
/// It holds a raw pointer and is therefore neither `Send` nor `Sync`: it is created, used and freed
/// on the worker thread that owns it (which is also the thread that entered the network namespace).
pub struct Context {
  lib: Arc<Libnftables>,
  ctx: *mut NftCtx,
  base_flags: u32,
}

impl Context {
  pub fn new(lib: Arc<Libnftables>, base_flags: u32) -> Result<Self, String> {
    let ctx = open_ctx(&lib)?;
    Ok(Self { lib, ctx, base_flags })
  }

  /// Replaces the context with a fresh one.
  ///
  /// libnftables keeps a cache of the kernel's objects between calls and updates it while it
  /// evaluates a batch. When the batch is not committed (a dry run, or a failure), 1.0.x keeps those
  /// uncommitted objects in the cache, so the next call sees elements that do not exist (for
  /// example "interval overlaps with an existing one"). A fresh context starts from the kernel.
  fn renew(&mut self) {
    if let Ok(ctx) = open_ctx(&self.lib) {
      // SAFETY: the old pointer came from nft_ctx_new, is freed once and replaced at once.
      unsafe { (self.lib.ctx_free)(self.ctx) };
      self.ctx = ctx;
    }
  }

  /// Runs nft text syntax from a buffer (the fast path).
  pub fn run_text(&mut self, text: &str, dry_run: bool) -> RunOutput {
    let Ok(buffer) = CString::new(text) else {
      return RunOutput::failed("Error: syntax error, input contains a NUL byte\n".into());
    };
    self.prepare(false, dry_run);
    // SAFETY: `ctx` is valid and `buffer` is a NUL-terminated string that outlives the call.
    let rc = unsafe { (self.lib.run_cmd_from_buffer)(self.ctx, buffer.as_ptr()) };
    self.collect(rc, dry_run)
  }

  /// Runs nft text syntax read from an anonymous memory file. libnftables reports the right line
  /// number (and quotes the right line) only for file input, so a failed text batch is run again
  /// this way, as a dry run, to say where it failed; reading a file costs more than a buffer.
  pub fn run_text_file(&mut self, text: &str, dry_run: bool) -> RunOutput {
    if text.contains('\0') {
      return RunOutput::failed("Error: syntax error, input contains a NUL byte\n".into());
    }
    let file = match memory_file(text) {
      Ok(file) => file,
      Err(e) => return RunOutput::failed(format!("Error: cannot buffer the input: {e}\n")),
    };
    let name = format!("/proc/self/fd/{}", file.as_raw_fd());
    let path = CString::new(name.clone()).expect("no NUL in a path");
    self.prepare(false, dry_run);
    // SAFETY: `ctx` is valid and `path` is a NUL-terminated string that outlives the call.
    let rc = unsafe { (self.lib.run_cmd_from_filename)(self.ctx, path.as_ptr()) };
    drop(file);
    RunOutput {
      input_name: Some(name),
      ..self.collect(rc, dry_run)
    }
  }

  /// Runs a libnftables JSON document (JSON output is switched on for the call).
  pub fn run_json(&mut self, json: &str, dry_run: bool) -> RunOutput {
    let Ok(buffer) = CString::new(json) else {
      return RunOutput::failed("Error: syntax error, input contains a NUL byte\n".into());
    };
    self.prepare(true, dry_run);
    // SAFETY: `ctx` is valid and `buffer` is a NUL-terminated string that outlives the call.
    let rc = unsafe { (self.lib.run_cmd_from_buffer)(self.ctx, buffer.as_ptr()) };
    self.collect(rc, dry_run)
  }

  /// Runs nft text with JSON output and echo switched on for the call: libnftables then prints,
  /// as one JSON document, each object the kernel created as its listing shows it, with handles.
  pub fn run_text_echo(&mut self, text: &str, dry_run: bool) -> RunOutput {
    let Ok(buffer) = CString::new(text) else {
      return RunOutput::failed("Error: syntax error, input contains a NUL byte\n".into());
    };
    self.prepare(true, dry_run);
    // SAFETY: `ctx` is valid and the setter only stores a value; the next call's `prepare` resets it.
    unsafe { (self.lib.output_set_flags)(self.ctx, self.base_flags | output_flags::JSON | output_flags::ECHO) };
    // SAFETY: `ctx` is valid and `buffer` is a NUL-terminated string that outlives the call.
    let rc = unsafe { (self.lib.run_cmd_from_buffer)(self.ctx, buffer.as_ptr()) };
    self.collect(rc, dry_run)
  }

  fn prepare(&mut self, json: bool, dry_run: bool) {
    let flags = if json {
      self.base_flags | output_flags::JSON
    } else {
      self.base_flags
    };
    // SAFETY: `ctx` is valid; both setters only store a value in the context.
    unsafe {
      (self.lib.output_set_flags)(self.ctx, flags);
      (self.lib.set_dry_run)(self.ctx, dry_run);
    }
  }

  fn collect(&mut self, rc: i32, dry_run: bool) -> RunOutput {
    // SAFETY: buffering was enabled in `new`, so both getters return valid NUL-terminated strings
    // owned by the context; they are copied before the next libnftables call can change them.
    let (output, error) = unsafe {
      (
        CStr::from_ptr((self.lib.get_output_buffer)(self.ctx))
          .to_string_lossy()
          .into_owned(),
        CStr::from_ptr((self.lib.get_error_buffer)(self.ctx))
          .to_string_lossy()
          .into_owned(),
      )
    };
    if dry_run || rc != 0 {
      self.renew();
    }
    RunOutput {
      ok: rc == 0,
      output,
      error,
      input_name: None,
    }
  }
}

impl RunOutput {
  fn failed(error: String) -> Self {
    Self {
      ok: false,
      output: String::new(),
      error,
      input_name: None,
    }
  }
}

impl Drop for Context {
  fn drop(&mut self) {
    // SAFETY: `ctx` came from nft_ctx_new, is freed exactly once, and is not used afterwards.
    unsafe { (self.lib.ctx_free)(self.ctx) }
  }
}

fn memory_file(text: &str) -> std::io::Result<OwnedFd> {
  // SAFETY: the name is a NUL-terminated literal; the returned descriptor is checked below.
  let fd = unsafe { libc::memfd_create(c"nft-input".as_ptr(), libc::MFD_CLOEXEC) };
  if fd < 0 {
    return Err(std::io::Error::last_os_error());
  }
  // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
  let owned = unsafe { OwnedFd::from_raw_fd(fd) };
  let mut file = std::fs::File::from(owned);
  file.write_all(text.as_bytes())?;
  Ok(file.into())
}

/// A new context with buffered output and error streams.
fn open_ctx(lib: &Libnftables) -> Result<*mut NftCtx, String> {
  // SAFETY: nft_ctx_new(NFT_CTX_DEFAULT) has no preconditions; a null result is handled below.
  let ctx = unsafe { (lib.ctx_new)(0) };
  if ctx.is_null() {
    return Err("nft_ctx_new failed (out of memory or no netlink socket)".into());
  }
  // SAFETY: `ctx` is a valid, exclusively owned context.
  let buffered = unsafe { (lib.buffer_output)(ctx) == 0 && (lib.buffer_error)(ctx) == 0 };
  if !buffered {
    // SAFETY: `ctx` is valid and not used after this.
    unsafe { (lib.ctx_free)(ctx) };
    return Err("nft_ctx_buffer_output/error failed".into());
  }
  Ok(ctx)
}
