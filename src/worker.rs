//! The thread that owns one libnftables context.
//!
//! Every `Nft` instance gets one worker thread. It enters the instance's network namespace (which
//! moves only that thread), loads libnftables, creates the context once and then executes requests
//! in arrival order. That gives, without locks around libnftables: calls off the JS thread,
//! serialisation per instance, independence between instances, and no setns on Node's threads.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;

use crate::context::Context;
use crate::error::{self, NativeError};
use crate::library::Libnftables;

/// Bisecting a failed JSON batch to find its failing command costs log2(n) dry runs; above this
/// many commands the index is left unknown rather than paying that.
const MAX_COMMANDS_TO_LOCATE: usize = 20_000;

pub enum Input {
  Text(String),
  Json(String),
  /// nft text whose output is libnftables' JSON echo of what the kernel created.
  TextEcho(String),
  /// No input: reads the namespace's ruleset generation id (the outcome is its decimal text).
  Generation,
}

pub struct Request {
  pub input: Input,
  pub dry_run: bool,
}

pub type Outcome = Result<String, NativeError>;
pub type Responder = Box<dyn FnOnce(Outcome) + Send>;

pub struct WorkerOptions {
  pub netns: Option<String>,
  pub library_path: Option<String>,
  pub output_flags: u32,
}

pub struct Worker {
  sender: Mutex<Option<Sender<(Request, Responder)>>>,
}

impl Worker {
  /// Starts the thread and waits until it has entered the namespace and created its context, so
  /// that a missing library or namespace is reported by the constructor.
  pub fn start(options: WorkerOptions) -> Result<Self, NativeError> {
    let (sender, receiver) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::Builder::new()
      .name("nftables-node".into())
      .spawn(move || run_thread(options, ready_tx, receiver))
      .map_err(|e| NativeError::binding("INTERNAL", format!("cannot start the libnftables thread: {e}")))?;
    match ready_rx.recv() {
      Ok(Ok(())) => Ok(Self {
        sender: Mutex::new(Some(sender)),
      }),
      Ok(Err(e)) => Err(e),
      Err(_) => Err(NativeError::binding(
        "INTERNAL",
        "the libnftables thread exited during start-up",
      )),
    }
  }

  /// Queues a request; `respond` is called on the worker thread with the outcome.
  pub fn submit(&self, request: Request, respond: Responder) {
    let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let Some(sender) = sender else {
      return respond(Err(closed_error()));
    };
    if let Err(mpsc::SendError((_, respond))) = sender.send((request, respond)) {
      respond(Err(NativeError::binding("INTERNAL", "the libnftables thread is gone")));
    }
  }

  /// Stops accepting requests. Queued requests still run; then the thread frees the context and exits.
  pub fn close(&self) {
    self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
  }

  pub fn is_closed(&self) -> bool {
    self.sender.lock().unwrap_or_else(|p| p.into_inner()).is_none()
  }
}

pub fn closed_error() -> NativeError {
  NativeError::binding("CLOSED", "this Nft instance is closed")
}

fn run_thread(
  options: WorkerOptions,
  ready: Sender<Result<(), NativeError>>,
  requests: Receiver<(Request, Responder)>,
) {
  let context = open_context(&options);
  let mut context = match context {
    Ok(context) => {
      let _ = ready.send(Ok(()));
      context
    }
    Err(e) => {
      let _ = ready.send(Err(e));
      return;
    }
  };
  for (request, respond) in requests {
    let outcome = catch_unwind(AssertUnwindSafe(|| execute(&mut context, &request)))
      .unwrap_or_else(|_| Err(NativeError::binding("INTERNAL", "the libnftables call panicked")));
    respond(outcome);
  }
}

fn open_context(options: &WorkerOptions) -> Result<Context, NativeError> {
  if let Some(netns) = &options.netns {
    crate::netns::enter(netns).map_err(|e| NativeError::binding("NETNS", e))?;
  }
  let library = Libnftables::open(options.library_path.as_deref())
    .map_err(|e| NativeError::binding("LIBNFTABLES_UNAVAILABLE", e))?;
  Context::new(library, options.output_flags).map_err(|e| NativeError::binding("INTERNAL", e))
}

fn execute(context: &mut Context, request: &Request) -> Outcome {
  match &request.input {
    Input::Text(text) | Input::TextEcho(text) => {
      let run = match request.input {
        Input::TextEcho(_) => context.run_text_echo(text, request.dry_run),
        _ => context.run_text(text, request.dry_run),
      };
      if run.ok {
        return Ok(run.output);
      }
      // Locate the failing line: the same batch from a file, as a dry run (changes nothing).
      let located = context.run_text_file(text, true);
      if located.ok {
        return Err(error::parse(&run.error, None, false));
      }
      Err(error::parse(&located.error, located.input_name.as_deref(), false))
    }
    Input::Json(json) => {
      let run = context.run_json(json, request.dry_run);
      if run.ok {
        return Ok(run.output);
      }
      let mut error = error::parse(&run.error, None, true);
      if error.index.is_none() {
        error.index = locate_failing_command(context, json);
      }
      Err(error)
    }
    Input::Generation => crate::generation::read().map(|id| id.to_string()),
  }
}

/// Finds the first command of a failed JSON batch that makes it fail, by dry-running prefixes.
///
/// libnftables reports kernel errors for JSON input without saying which command caused them.
/// Dry runs go through the kernel's validation but never commit, so this changes nothing.
fn locate_failing_command(context: &mut Context, json: &str) -> Option<u32> {
  let document: serde_json::Value = serde_json::from_str(json).ok()?;
  let commands = document.get("nftables")?.as_array()?;
  if commands.is_empty() || commands.len() > MAX_COMMANDS_TO_LOCATE {
    return None;
  }
  let mut prefix_fails = |len: usize| {
    let prefix = serde_json::json!({ "nftables": &commands[..len] });
    !context.run_json(&prefix.to_string(), true).ok
  };
  if !prefix_fails(commands.len()) {
    return None;
  }
  // Smallest failing prefix length in 1..=n; its last command is the culprit.
  let (mut low, mut high) = (1, commands.len());
  while low < high {
    let middle = (low + high) / 2;
    if prefix_fails(middle) {
      high = middle;
    } else {
      low = middle + 1;
    }
  }
  u32::try_from(low - 1).ok()
}
