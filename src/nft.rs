//! `NativeNft`: the JavaScript-facing handle on one worker thread and its libnftables context.
//!
//! This layer moves strings across the boundary and nothing more; JSON (de)serialisation, the
//! `NftError` class and the public `Nft` API live in the TypeScript layer, where `JSON.parse` is
//! faster than building JS objects from Rust one property at a time.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::error::NativeError;
use crate::library::output_flags;
use crate::worker::{closed_error, Input, Outcome, Request, Responder, Worker, WorkerOptions};

/// Options for a libnftables context: the one declaration of every option `new Nft(options)` passes
/// to the native side (the TypeScript `NftOptions` extends this type with its own `dryRun`), so adding
/// an option is a field here plus its use in `NativeNft::new`. The `///` docs are the public ones.
#[napi(object)]
#[derive(Default)]
pub struct NativeOptions {
  /// Network namespace: a bare name made by `ip netns add` (under /var/run/netns), or an absolute
  /// path such as /proc/PID/ns/net (relative paths are refused; `/proc/1/ns/net` is the host's
  /// namespace, named on purpose). Omit it for the process's own namespace. Every command of this
  /// instance runs there; the calling process and its other threads stay put. A call fails with
  /// `NETNS` once the path no longer names the namespace the instance entered (deleted, or
  /// replaced by a new one of the same name).
  pub netns: Option<String>,
  /// Load libnftables from this path (default `$NFTABLES_NODE_LIBNFTABLES`, else `libnftables.so.1`).
  pub library_path: Option<String>,
  /// Include rule handles in output (`nft -a`).
  pub handles: Option<bool>,
  /// Print what was added, with handles (`nft -e`).
  pub echo: Option<bool>,
  /// Omit counter and quota values (`nft -s`).
  pub stateless: Option<bool>,
  /// Omit set contents (`nft -t`).
  pub terse: Option<bool>,
  /// Numeric protocols, ports and priorities (`nft -n`).
  pub numeric: Option<bool>,
}

/// Result of one call: `output` on success, `error` on failure.
#[napi(object)]
pub struct NativeResponse {
  pub output: Option<String>,
  pub error: Option<NativeError>,
}

impl From<Outcome> for NativeResponse {
  fn from(outcome: Outcome) -> Self {
    match outcome {
      Ok(output) => Self {
        output: Some(output),
        error: None,
      },
      Err(error) => Self {
        output: None,
        error: Some(error),
      },
    }
  }
}

/// Result of `generation()`: `id` on success, `error` on failure.
#[napi(object)]
pub struct NativeGeneration {
  pub id: Option<u32>,
  pub error: Option<NativeError>,
}

impl From<Outcome> for NativeGeneration {
  fn from(outcome: Outcome) -> Self {
    let parsed = outcome.and_then(|text| {
      text
        .parse::<u32>()
        .map_err(|_| NativeError::binding("INTERNAL", format!("not a generation id: {text}")))
    });
    match parsed {
      Ok(id) => Self {
        id: Some(id),
        error: None,
      },
      Err(error) => Self {
        id: None,
        error: Some(error),
      },
    }
  }
}

/// An input handed over in pieces, so that no single call converts megabytes on the JavaScript
/// thread: `push` appends a piece (converted to UTF-8 at once), `NativeNft.runInput` takes the whole
/// text and leaves the input empty. A piece must not end between the two halves of a surrogate pair.
#[napi]
#[derive(Default)]
pub struct NativeInput {
  text: String,
}

#[napi]
impl NativeInput {
  #[napi(constructor)]
  pub fn new() -> Self {
    Self::default()
  }

  /// Appends the next piece of the input.
  #[napi]
  pub fn push(&mut self, piece: String) {
    self.text.push_str(&piece);
  }
}

/// One libnftables context on its own thread, optionally inside a network namespace.
#[napi]
pub struct NativeNft {
  worker: Option<Worker>,
  start_error: Option<NativeError>,
}

#[napi]
impl NativeNft {
  /// Starts the worker thread, enters `netns` and loads libnftables. Never throws: a failure is
  /// kept in `startError` so the caller can raise its own typed error.
  #[napi(constructor)]
  pub fn new(options: Option<NativeOptions>) -> Self {
    let options = options.unwrap_or_default();
    let flag = |on: Option<bool>, bits: u32| if on.unwrap_or(false) { bits } else { 0 };
    let output_flags = flag(options.handles, output_flags::HANDLE)
      | flag(options.echo, output_flags::ECHO)
      | flag(options.stateless, output_flags::STATELESS)
      | flag(options.terse, output_flags::TERSE)
      | flag(options.numeric, output_flags::NUMERIC_ALL);
    match Worker::start(WorkerOptions {
      netns: options.netns,
      library_path: options.library_path,
      output_flags,
    }) {
      Ok(worker) => Self {
        worker: Some(worker),
        start_error: None,
      },
      Err(error) => Self {
        worker: None,
        start_error: Some(error),
      },
    }
  }

  /// Why the constructor could not open a context (`LIBNFTABLES_UNAVAILABLE`, `NETNS`, ...), if it could not.
  #[napi(getter)]
  pub fn start_error(&self) -> Option<NativeError> {
    self.start_error.clone()
  }

  /// Runs nft text (`json = false`) or a JSON document (`json = true`) on the worker thread;
  /// `dryRun` validates against the kernel without committing. The promise always resolves.
  #[napi(ts_return_type = "Promise<NativeResponse>")]
  pub fn run<'env>(&self, env: &'env Env, input: String, json: bool, dry_run: bool) -> Result<Object<'env>> {
    let (deferred, promise) = env.create_deferred()?;
    self.submit(
      input,
      json,
      dry_run,
      Responder::Callback(Box::new(move |outcome| {
        deferred.resolve(move |_| Ok(NativeResponse::from(outcome)))
      })),
    );
    Ok(promise)
  }

  /// Same as `run`, with the input built by `NativeInput.push` (taken from it, in constant time).
  #[napi(ts_return_type = "Promise<NativeResponse>")]
  pub fn run_input<'env>(
    &self,
    env: &'env Env,
    input: &mut NativeInput,
    json: bool,
    dry_run: bool,
  ) -> Result<Object<'env>> {
    self.run(env, std::mem::take(&mut input.text), json, dry_run)
  }

  /// Same as `run`, waiting on the calling thread.
  #[napi]
  pub fn run_sync(&self, input: String, json: bool, dry_run: bool) -> NativeResponse {
    let (tx, rx) = std::sync::mpsc::channel();
    self.submit(input, json, dry_run, Responder::Channel(tx));
    NativeResponse::from(
      rx.recv()
        .unwrap_or_else(|_| Err(NativeError::binding("INTERNAL", "the libnftables thread is gone"))),
    )
  }

  /// Runs nft text on the worker thread with JSON output and echo on for this call only; `output`
  /// is libnftables' JSON echo of what the kernel created (with handles). The promise always resolves.
  #[napi(ts_return_type = "Promise<NativeResponse>")]
  pub fn run_echo<'env>(&self, env: &'env Env, input: String, dry_run: bool) -> Result<Object<'env>> {
    let (deferred, promise) = env.create_deferred()?;
    self.submit_input(
      Input::TextEcho(input),
      dry_run,
      Responder::Callback(Box::new(move |outcome| {
        deferred.resolve(move |_| Ok(NativeResponse::from(outcome)))
      })),
    );
    Ok(promise)
  }

  /// Same as `runEcho`, waiting on the calling thread.
  #[napi]
  pub fn run_echo_sync(&self, input: String, dry_run: bool) -> NativeResponse {
    NativeResponse::from(self.wait(Input::TextEcho(input), dry_run))
  }

  /// Reads the ruleset generation id (`NFT_MSG_GETGEN`) of the instance's network namespace on the
  /// worker thread, after the calls queued before it. The promise always resolves.
  #[napi(ts_return_type = "Promise<NativeGeneration>")]
  pub fn generation<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
    let (deferred, promise) = env.create_deferred()?;
    self.submit_input(
      Input::Generation,
      false,
      Responder::Callback(Box::new(move |outcome| {
        deferred.resolve(move |_| Ok(NativeGeneration::from(outcome)))
      })),
    );
    Ok(promise)
  }

  /// Same as `generation`, waiting on the calling thread.
  #[napi]
  pub fn generation_sync(&self) -> NativeGeneration {
    NativeGeneration::from(self.wait(Input::Generation, false))
  }

  /// Commits nf_tables netlink messages (bridge family, each naming table `table`) as one batch on the
  /// worker thread, without libnftables, after the calls queued before it. Only chains (added, flushed,
  /// deleted), rules and set elements, and the table itself, its base chains and its sets and maps (created),
  /// are accepted; anything else, another table, or a malformed buffer is refused (`BATCH_REFUSED`) before
  /// anything is sent. A kernel refusal carries its errno's code and the
  /// index of the refused message. `dryRun`: the kernel checks the batch and commits nothing (the batch is
  /// sent without its end message, as libnftables does). `expect`: send only while the namespace's
  /// generation is still this one (else `GENERATION_MOVED`, nothing sent). The output is the generation
  /// before and after the batch, read on the worker thread (`"<before> <after>"`). The promise always resolves.
  #[napi(ts_return_type = "Promise<NativeResponse>")]
  pub fn commit_batch<'env>(
    &self,
    env: &'env Env,
    table: String,
    messages: Buffer,
    dry_run: bool,
    expect: Option<u32>,
  ) -> Result<Object<'env>> {
    let (deferred, promise) = env.create_deferred()?;
    self.submit_input(
      Input::Batch {
        table,
        messages: messages.to_vec(),
        expect,
      },
      dry_run,
      Responder::Callback(Box::new(move |outcome| {
        deferred.resolve(move |_| Ok(NativeResponse::from(outcome)))
      })),
    );
    Ok(promise)
  }

  /// Same as `commitBatch`, waiting on the calling thread.
  #[napi]
  pub fn commit_batch_sync(&self, table: String, messages: Buffer, dry_run: bool, expect: Option<u32>) -> NativeResponse {
    NativeResponse::from(self.wait(
      Input::Batch {
        table,
        messages: messages.to_vec(),
        expect,
      },
      dry_run,
    ))
  }

  /// Stops accepting calls; calls already queued still complete. Idempotent.
  #[napi]
  pub fn close(&self) {
    if let Some(worker) = &self.worker {
      worker.close();
    }
  }

  /// Whether `close()` was called (or the context never opened).
  #[napi(getter)]
  pub fn closed(&self) -> bool {
    self.worker.as_ref().is_none_or(Worker::is_closed)
  }
}

impl NativeNft {
  fn submit(&self, input: String, json: bool, dry_run: bool, respond: Responder) {
    let input = if json { Input::Json(input) } else { Input::Text(input) };
    self.submit_input(input, dry_run, respond);
  }

  fn submit_input(&self, input: Input, dry_run: bool, respond: Responder) {
    let Some(worker) = &self.worker else {
      return respond.respond(Err(self.start_error.clone().unwrap_or_else(closed_error)));
    };
    worker.submit(Request { input, dry_run }, respond);
  }

  fn wait(&self, input: Input, dry_run: bool) -> Outcome {
    let (tx, rx) = std::sync::mpsc::channel();
    self.submit_input(input, dry_run, Responder::Channel(tx));
    rx.recv()
      .unwrap_or_else(|_| Err(NativeError::binding("INTERNAL", "the libnftables thread is gone")))
  }
}
