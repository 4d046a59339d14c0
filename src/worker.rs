//! The thread that owns one libnftables context.
//!
//! Every `Nft` instance gets one worker thread. It takes a private descriptor table (see `fdtable`),
//! enters the instance's network namespace (which moves only that thread), loads libnftables,
//! creates the context and then executes requests in arrival order. That gives, without locks
//! around libnftables: calls off the JS thread, serialisation per instance, independence between
//! instances, no setns on Node's threads, and libnftables' stdio kept away from the process's.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, OnceLock};

use crate::context::{Context, RunOutput};
use crate::error::{self, NativeError};
use crate::fdtable::PrivateStdio;
use crate::library::Libnftables;
use crate::netns::Entered;

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
  /// nf_tables messages of one table, committed as one batch without libnftables (see `batch`).
  Batch {
    table: String,
    messages: Vec<u8>,
    /// Sent only while the generation is still this one (else `GENERATION_MOVED`, nothing sent).
    expect: Option<u32>,
  },
}

pub struct Request {
  pub input: Input,
  pub dry_run: bool,
}

pub type Outcome = Result<String, NativeError>;
type Callback = Box<dyn FnOnce(Outcome) + Send>;

/// Where an outcome goes.
pub enum Responder {
  /// A thread waiting on a channel (`runSync`).
  Channel(Sender<Outcome>),
  /// A callback that may use the process's descriptors (it resolves a promise, which wakes Node's
  /// event loop through an eventfd); never called on a worker thread with a private table.
  Callback(Callback),
}

impl Responder {
  /// Delivers the outcome from any thread that shares the process's descriptor table.
  pub fn respond(self, outcome: Outcome) {
    match self {
      Self::Channel(sender) => drop(sender.send(outcome)),
      Self::Callback(callback) => callback(outcome),
    }
  }

  /// Delivers the outcome from a worker thread: callbacks go through the relay thread when the
  /// worker's descriptor table is its own.
  fn respond_from_worker(self, outcome: Outcome, private_table: bool) {
    match self {
      Self::Callback(callback) if private_table => {
        // The relay exists (`Worker::start` made sure) and never exits: its loop outlives every
        // sender, and it catches panics of the callbacks it runs.
        if let Some(relay) = relay() {
          let _ = relay.send((callback, outcome));
        }
      }
      responder => responder.respond(outcome),
    }
  }
}

/// The one thread, shared by all instances, that runs callbacks for workers with private tables.
/// A new thread shares the descriptor table of the thread that creates it, so this is first called
/// by `Worker::start` on a JavaScript thread, never by a worker.
fn relay() -> Option<&'static Sender<(Callback, Outcome)>> {
  static RELAY: OnceLock<Option<Sender<(Callback, Outcome)>>> = OnceLock::new();
  RELAY
    .get_or_init(|| {
      let (sender, receiver) = mpsc::channel::<(Callback, Outcome)>();
      std::thread::Builder::new()
        .name("nftables-node-relay".into())
        .spawn(move || {
          for (callback, outcome) in receiver {
            let _ = catch_unwind(AssertUnwindSafe(|| callback(outcome)));
          }
        })
        .ok()
        .map(|_| sender)
    })
    .as_ref()
}

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
  /// that a missing library or namespace is reported by the constructor. Nothing on the way opens
  /// a file in a way that can block (see `netns::enter`).
  pub fn start(options: WorkerOptions) -> Result<Self, NativeError> {
    if relay().is_none() {
      return Err(NativeError::binding("INTERNAL", "cannot start the reply thread"));
    }
    let (sender, receiver) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::Builder::new()
      .name("nftables-node".into())
      .spawn(move || run_thread(options, ready_tx, receiver))
      .map_err(|e| NativeError::from_io("cannot start the libnftables thread", &e))?;
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

  /// Queues a request; `respond` gets the outcome.
  pub fn submit(&self, request: Request, respond: Responder) {
    let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let Some(sender) = sender else {
      return respond.respond(Err(closed_error()));
    };
    if let Err(mpsc::SendError((_, respond))) = sender.send((request, respond)) {
      respond.respond(Err(NativeError::binding("INTERNAL", "the libnftables thread is gone")));
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

/// What a worker thread works with.
struct State {
  context: Context,
  netns: Option<Entered>,
}

fn run_thread(
  options: WorkerOptions,
  ready: Sender<Result<(), NativeError>>,
  requests: Receiver<(Request, Responder)>,
) {
  let (mut state, private_table) = match open_state(&options) {
    Ok(opened) => {
      let _ = ready.send(Ok(()));
      opened
    }
    Err(e) => {
      let _ = ready.send(Err(e));
      return;
    }
  };
  for (request, respond) in requests {
    let outcome = catch_unwind(AssertUnwindSafe(|| execute(&mut state, &request)))
      .unwrap_or_else(|_| Err(NativeError::binding("INTERNAL", "the libnftables call panicked")));
    respond.respond_from_worker(outcome, private_table);
  }
}

fn open_state(options: &WorkerOptions) -> Result<(State, bool), NativeError> {
  let stdio = match PrivateStdio::install() {
    Ok(stdio) => Some(stdio),
    Err(None) => None,
    Err(Some(e)) => return Err(NativeError::from_io("cannot set up the libnftables thread", &e)),
  };
  let private_table = stdio.is_some();
  let netns = match &options.netns {
    Some(netns) => Some(crate::netns::enter(netns)?),
    None => None,
  };
  let library = Libnftables::open(options.library_path.as_deref())
    .map_err(|e| NativeError::binding("LIBNFTABLES_UNAVAILABLE", e))?;
  let context = Context::new(library, options.output_flags, stdio)?;
  Ok((State { context, netns }, private_table))
}

fn execute(state: &mut State, request: &Request) -> Outcome {
  if let Some(netns) = &state.netns {
    netns.check().map_err(|e| NativeError::binding("NETNS", e))?;
  }
  let context = &mut state.context;
  match &request.input {
    Input::Text(text) | Input::TextEcho(text) => {
      if has_monitor_command(text) {
        return Err(NativeError::binding(
          "EINVAL",
          "`monitor` is not supported: libnftables would wait for events forever and the instance could never \
           run another call",
        ));
      }
      let run = match request.input {
        Input::TextEcho(_) => context.run_text_echo(text, request.dry_run)?,
        _ => context.run_text(text, request.dry_run)?,
      };
      if run.ok {
        return Ok(run.output);
      }
      Err(parse(&run, false))
    }
    Input::Json(json) => {
      let run = context.run_json(json, request.dry_run)?;
      if run.ok {
        return Ok(run.output);
      }
      let mut error = parse(&run, true);
      if error.index.is_none() {
        error.index = locate_failing_command(context, json);
      }
      Err(error)
    }
    Input::Generation => crate::generation::read().map(|id| id.to_string()),
    Input::Batch { table, messages, expect } => {
      // The generation before and after, read on this thread around the commit: the caller learns whether
      // anyone else committed without two more round trips to this thread.
      let before = crate::generation::read()?;
      if expect.is_some_and(|g| g != before) {
        return Err(NativeError::binding(
          "GENERATION_MOVED",
          format!("the ruleset generation moved from {} to {before}: batch not sent", expect.unwrap_or(0)),
        ));
      }
      crate::batch::commit(messages, table, request.dry_run)?;
      let after = crate::generation::read()?;
      Ok(format!("{before} {after}"))
    }
  }
}

/// Whether nft text has a command starting with `monitor` (outside strings and comments).
/// libnftables 1.0.x answers one by listening for events until the process ends. Works on bytes:
/// every byte it looks for is ASCII, which never occurs inside a multi-byte UTF-8 character.
fn has_monitor_command(text: &str) -> bool {
  const WORD: &[u8] = b"monitor";
  let bytes = text.as_bytes();
  let (mut in_string, mut in_comment, mut at_command) = (false, false, true);
  for (i, &b) in bytes.iter().enumerate() {
    if in_comment {
      if b == b'\n' {
        (in_comment, at_command) = (false, true);
      }
      continue;
    }
    if in_string {
      in_string = b != b'"';
      continue;
    }
    match b {
      b'\n' | b';' => at_command = true,
      b'#' => in_comment = true,
      b if b.is_ascii_whitespace() => {}
      b => {
        if at_command && bytes[i..].starts_with(WORD) {
          let next = bytes.get(i + WORD.len());
          if !next.is_some_and(|n| n.is_ascii_alphanumeric() || matches!(n, b'_' | b'-' | b'.') || *n >= 0x80) {
            return true;
          }
        }
        in_string = b == b'"';
        at_command = false;
      }
    }
  }
  false
}

fn parse(run: &RunOutput, json: bool) -> NativeError {
  error::parse(&run.error, run.input_name.as_deref(), json)
}

/// Finds the first command of a failed JSON batch that makes it fail, by dry-running prefixes.
///
/// libnftables reports kernel errors for JSON input without saying which command caused them.
/// Dry runs go through the kernel's validation but never commit, so this changes no object; the
/// kernel does count the rule handles those dry runs allocate (see the README).
fn locate_failing_command(context: &mut Context, json: &str) -> Option<u32> {
  let document: serde_json::Value = serde_json::from_str(json).ok()?;
  let commands = document.get("nftables")?.as_array()?;
  if commands.is_empty() || commands.len() > MAX_COMMANDS_TO_LOCATE {
    return None;
  }
  let mut prefix_fails = |len: usize| {
    let prefix = serde_json::json!({ "nftables": &commands[..len] });
    !context.run_json(&prefix.to_string(), true).is_ok_and(|run| run.ok)
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

#[cfg(test)]
mod tests {
  use super::has_monitor_command;

  #[test]
  fn monitor_commands_are_found_wherever_a_command_starts() {
    for text in [
      "monitor",
      "monitor new tables",
      "  monitor trace\n",
      "add table bridge t; monitor",
      "add table bridge t\n\tmonitor rules",
      "# comment\nmonitor",
    ] {
      assert!(has_monitor_command(text), "{text:?}");
    }
  }

  #[test]
  fn the_word_elsewhere_is_not_a_monitor_command() {
    for text in [
      "add rule bridge t c counter comment \"monitor\"",
      "add rule bridge t c comment \"x; monitor\"",
      "add table bridge t # monitor",
      "add table bridge monitors",
      "add chain bridge t monitor_x",
      "monitorx",
      "monitoré",
      "list ruleset",
      "",
    ] {
      assert!(!has_monitor_command(text), "{text:?}");
    }
  }
}
