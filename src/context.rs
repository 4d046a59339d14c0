//! One libnftables context (`struct nft_ctx`), owned by exactly one worker thread.

use std::ffi::{CStr, CString};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use crate::error::NativeError;
use crate::fdtable::PrivateStdio;
use crate::library::{output_flags, Libnftables, NftCtx};

/// Held around every libnftables call with JSON input or output (see `Context::call`).
static JSON_CALLS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The name libnftables gives input it reads from fd 0 (`nft -f -`); error locations start with it.
pub const STDIN_NAME: &str = "/dev/stdin";
/// This thread's fd 0 by name (its private stdio's input).
const THREAD_STDIN: &str = "/proc/thread-self/fd/0";

/// Whether libnftables >= 1.0.7 accepts `/dev/stdin` as a file name: its stat() of that name (the
/// process's fd 0) is a regular file, a FIFO or a character device.
fn process_stdin_accepted() -> bool {
  use std::os::unix::fs::FileTypeExt;
  std::fs::metadata(STDIN_NAME).is_ok_and(|m| {
    let t = m.file_type();
    t.is_file() || t.is_fifo() || t.is_char_device()
  })
}

/// What one libnftables call produced: its return code and both buffers.
pub struct RunOutput {
  pub ok: bool,
  pub output: String,
  /// libnftables' error buffer, preceded by anything it wrote to stdout/stderr during the call.
  pub error: String,
  /// A name libnftables used for the input in `error` that is to be shown as `STDIN_NAME`.
  pub input_name: Option<String>,
}

/// A libnftables context with buffered output and error streams.
///
/// It holds a raw pointer and is therefore neither `Send` nor `Sync`: it is created, used and freed
/// on the worker thread that owns it (which is also the thread that entered the network namespace).
/// The pointer is null between freeing a context and opening its successor, when that failed.
pub struct Context {
  lib: Arc<Libnftables>,
  ctx: *mut NftCtx,
  base_flags: u32,
  /// The thread's private stdin/stdout/stderr, when it has a private descriptor table.
  stdio: Option<PrivateStdio>,
  /// Echo (`nft -e`) for the current call only: set by `run_text_echo`, read by `call`.
  echo: bool,
}

impl Context {
  pub fn new(lib: Arc<Libnftables>, base_flags: u32, stdio: Option<PrivateStdio>) -> Result<Self, NativeError> {
    let mut context = Self {
      lib,
      ctx: std::ptr::null_mut(),
      base_flags,
      stdio,
      echo: false,
    };
    context.open()?;
    Ok(context)
  }

  /// Opens a context if there is none (the first, or after `renew` could not open one).
  fn open(&mut self) -> Result<(), NativeError> {
    if self.ctx.is_null() {
      self.ctx = open_ctx(&self.lib)?;
    }
    Ok(())
  }

  /// Replaces the context with a fresh one.
  ///
  /// libnftables keeps a cache of the kernel's objects between calls and updates it while it
  /// evaluates a batch. After a dry run, 1.0.x keeps the uncommitted objects in the cache, so the
  /// next call sees elements that do not exist (for example "interval overlaps with an existing
  /// one"). A fresh context starts from the kernel. (A failed batch needs no renewal: libnftables
  /// drops its cache itself then.) The old context is freed first, so its socket's descriptor is
  /// available to the new one; if the new one cannot be opened the next call tries again.
  fn renew(&mut self) {
    if !self.ctx.is_null() {
      // SAFETY: the pointer came from nft_ctx_new, is freed once and nulled at once.
      unsafe { (self.lib.ctx_free)(self.ctx) };
      self.ctx = std::ptr::null_mut();
    }
    let _ = self.open();
  }

  /// Runs nft text syntax, as `nft` reads a file: located errors (line, column, the quoted line).
  ///
  /// The input is the text followed by a newline, which is what libnftables' buffer input (and
  /// `nft 'commands'`) parses. With a private stdio it is fd 0's content and libnftables reads it
  /// as `nft -f -` does. Otherwise it is read from an anonymous memory file (and, when not even
  /// that can be created, from a buffer, whose errors carry no line).
  pub fn run_text(&mut self, text: &str, dry_run: bool) -> Result<RunOutput, NativeError> {
    self.run_text_as(text, false, dry_run)
  }

  /// Runs nft text with JSON output and echo switched on for the call: libnftables then prints,
  /// as one JSON document, each object the kernel created as its listing shows it, with handles.
  ///
  /// From a buffer: with JSON output, libnftables 1.0.x reads file input as JSON first and opens
  /// `/dev/stdin` by name (the process's stdin, not this thread's) instead of reading fd 0. Buffer
  /// input has no such detour; its errors carry no reliable line on 1.0.x.
  pub fn run_text_echo(&mut self, text: &str, dry_run: bool) -> Result<RunOutput, NativeError> {
    if text.contains('\0') {
      return Ok(RunOutput::failed(
        "Error: syntax error, input contains a NUL byte\n".into(),
      ));
    }
    self.echo = true;
    let run = self.run_buffer(&format!("{text}\n"), true, dry_run);
    self.echo = false;
    run
  }

  fn run_text_as(&mut self, text: &str, json: bool, dry_run: bool) -> Result<RunOutput, NativeError> {
    if text.contains('\0') {
      return Ok(RunOutput::failed(
        "Error: syntax error, input contains a NUL byte\n".into(),
      ));
    }
    let input = format!("{text}\n");
    if let Some(stdio) = &mut self.stdio {
      stdio
        .set_input(input.as_bytes())
        .map_err(|e| NativeError::from_io("cannot pass the input to libnftables", &e))?;
      // libnftables reads `/dev/stdin` from this thread's fd 0 without opening anything (so it works at
      // the descriptor limit), but >= 1.0.7 first stat()s that name, which is `/proc/self/fd/0`: the
      // process's fd 0, refused unless it is a file, a pipe or a character device (a service started
      // with a socket as stdin, as Node starts its children, could not run text). Then this thread's
      // fd 0 is named instead (libnftables opens it: one more descriptor for the call).
      let name = if process_stdin_accepted() { STDIN_NAME } else { THREAD_STDIN };
      let run = self.call(json, dry_run, |lib, ctx| {
        let path = CString::new(name).expect("no NUL in a path");
        // SAFETY: `ctx` is valid and `path` is a NUL-terminated string that outlives the call.
        unsafe { (lib.run_cmd_from_filename)(ctx, path.as_ptr()) }
      });
      if let Some(stdio) = &mut self.stdio {
        stdio.clear_input();
      }
      return run.map(|r| RunOutput {
        input_name: (name != STDIN_NAME).then(|| name.into()),
        ..r
      });
    }
    match memory_file(&input) {
      Ok(file) => self.run_file(file, json, dry_run),
      Err(_) => self.run_buffer(text, json, dry_run),
    }
  }

  /// Runs a libnftables JSON document (JSON output is switched on for the call), from a buffer;
  /// without a private stdio from a memory file, since for buffer input libnftables prints some
  /// messages straight to stderr (`(you must be root)`), which it does not for file input.
  pub fn run_json(&mut self, json: &str, dry_run: bool) -> Result<RunOutput, NativeError> {
    if json.contains('\0') {
      return Ok(RunOutput::failed(
        "Error: syntax error, input contains a NUL byte\n".into(),
      ));
    }
    if self.stdio.is_none() {
      if let Ok(file) = memory_file(json) {
        return self.run_file(file, true, dry_run);
      }
    }
    self.run_buffer(json, true, dry_run)
  }

  /// Runs `input` (free of NUL bytes) from a buffer.
  fn run_buffer(&mut self, input: &str, json: bool, dry_run: bool) -> Result<RunOutput, NativeError> {
    let buffer = CString::new(input).expect("checked for NUL by the caller");
    self.call(json, dry_run, |lib, ctx| {
      // SAFETY: `ctx` is valid and `buffer` is a NUL-terminated string that outlives the call.
      unsafe { (lib.run_cmd_from_buffer)(ctx, buffer.as_ptr()) }
    })
  }

  /// Runs the content of an anonymous memory file, read by its /proc/thread-self/fd name: this
  /// thread's descriptor table, whether private or the process's.
  fn run_file(&mut self, file: OwnedFd, json: bool, dry_run: bool) -> Result<RunOutput, NativeError> {
    let name = format!("/proc/thread-self/fd/{}", file.as_raw_fd());
    let path = CString::new(name.clone()).expect("no NUL in a path");
    let run = self.call(json, dry_run, |lib, ctx| {
      // SAFETY: `ctx` is valid and `path` is a NUL-terminated string that outlives the call.
      unsafe { (lib.run_cmd_from_filename)(ctx, path.as_ptr()) }
    });
    drop(file);
    Ok(RunOutput {
      input_name: Some(name),
      ..run?
    })
  }

  /// One libnftables call with the output flags and dry-run mode set, and its buffers collected.
  fn call(
    &mut self,
    json: bool,
    dry_run: bool,
    run: impl FnOnce(&Libnftables, *mut NftCtx) -> i32,
  ) -> Result<RunOutput, NativeError> {
    self.open()?;
    let flags = if json {
      self.base_flags | output_flags::JSON
    } else {
      self.base_flags
    } | if self.echo { output_flags::ECHO } else { 0 };
    // SAFETY: `ctx` is valid (opened above); both setters only store a value in the context.
    unsafe {
      (self.lib.output_set_flags)(self.ctx, flags);
      (self.lib.set_dry_run)(self.ctx, dry_run);
    }
    if let Some(stdio) = &mut self.stdio {
      // Whatever was printed between calls (nothing should be) is not this call's.
      stdio.take_capture();
    }
    let rc = {
      // libnftables 1.0.x prints a set's key type in JSON with strtok(3), whose state is the process's: two
      // instances' threads printing sets at once corrupt each other's walk and libnftables aborts. JSON calls
      // of all instances therefore run one at a time (text calls stay parallel).
      let _one_json_call = json.then(|| JSON_CALLS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
      run(&self.lib, self.ctx)
    };
    // SAFETY: buffering was enabled in `open_ctx`, so both getters return valid NUL-terminated
    // strings owned by the context; they are copied before the next libnftables call can change them.
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
    let printed = self.stdio.as_mut().map(PrivateStdio::take_capture).unwrap_or_default();
    if dry_run && rc == 0 {
      self.renew();
    }
    Ok(RunOutput {
      ok: rc == 0,
      output,
      error: printed + &error,
      input_name: None,
    })
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
    if !self.ctx.is_null() {
      // SAFETY: `ctx` came from nft_ctx_new, is freed exactly once, and is not used afterwards.
      unsafe { (self.lib.ctx_free)(self.ctx) }
    }
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

/// Opens and closes a netfilter netlink socket, as nft_ctx_new is about to.
///
/// libnftables 1.0.x calls exit() when nft_ctx_new cannot open its socket (for example when the
/// descriptor limit is reached): the whole process would end. Trying first turns that into an
/// error with the errno. The window between this close and libnftables' own socket() is only a
/// race when the thread shares the process's descriptor table (see `fdtable`).
fn probe_netlink_socket() -> Result<(), NativeError> {
  // Opened and closed at once (dropped).
  crate::netlink::netfilter_socket()
    .map(drop)
    .map_err(|e| NativeError::from_io("cannot open a netlink socket for libnftables", &e))
}

/// A new context with buffered output and error streams.
fn open_ctx(lib: &Libnftables) -> Result<*mut NftCtx, NativeError> {
  probe_netlink_socket()?;
  // SAFETY: nft_ctx_new(NFT_CTX_DEFAULT) has no preconditions; a null result is handled below.
  let ctx = unsafe { (lib.ctx_new)(0) };
  if ctx.is_null() {
    return Err(NativeError::binding("INTERNAL", "nft_ctx_new failed"));
  }
  // SAFETY: `ctx` is a valid, exclusively owned context.
  let buffered = unsafe { (lib.buffer_output)(ctx) == 0 && (lib.buffer_error)(ctx) == 0 };
  if !buffered {
    // SAFETY: `ctx` is valid and not used after this.
    unsafe { (lib.ctx_free)(ctx) };
    return Err(NativeError::binding("INTERNAL", "nft_ctx_buffer_output/error failed"));
  }
  Ok(ctx)
}
