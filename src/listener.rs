//! `NativeListener`: a thread in the instance's network namespace that reads one netlink source —
//! nf_tables change notifications (`kind: "nftables"`) or an nfnetlink_log group (`kind: "nflog"`) —
//! into a bounded queue that JavaScript drains with `next()`.
//!
//! The thread keeps the process's descriptor table (no `unshare`), so resolving a promise from it,
//! which wakes Node's loop through an eventfd, is allowed. The queue never holds more than `queueLimit`
//! events: past that, events are counted in `dropped` and discarded, so a flood costs a counter, not
//! memory. Receives time out every `TICK` so that `close()` ends the thread promptly and a deleted
//! namespace is noticed; the socket is closed when the thread ends.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use napi::bindgen_prelude::*;
use napi::JsDeferred;
use napi_derive::napi;

use crate::error::NativeError;
use crate::monitor::{self, Notification};
use crate::netlink::Socket;
use crate::nflog;

const TICK: Duration = Duration::from_millis(100);
const NETNS_CHECK: Duration = Duration::from_millis(250);
const RECV_BUFFER: usize = 256 * 1024;
const SOCKET_BUFFER: usize = 4 << 20;
const DEFAULT_QUEUE_LIMIT: usize = 4096;
/// Most events one `next()` hands over.
const BATCH: usize = 1024;

#[napi(object)]
#[derive(Default)]
pub struct NativeListenerOptions {
  /// `nftables` (change notifications) or `nflog` (packets of a log group).
  pub kind: String,
  /// Network namespace, as for `NativeNft`.
  pub netns: Option<String>,
  /// nflog: the group to bind (0..65535).
  pub group: Option<u32>,
  /// nflog: bytes of each packet copied (default 128: enough for IP and L4 headers).
  pub copy_range: Option<u32>,
  /// Events kept before more are counted as dropped (default 4096).
  pub queue_limit: Option<u32>,
  /// nftables: report only changes of this table (with `family`), and only in batches committed by
  /// other processes. Changes are held on the thread until their batch's NFT_MSG_NEWGEN says who
  /// committed it: this process's own batches (a sync of thousands of rules) never reach the queue.
  pub table: Option<String>,
  /// nftables: as `table`, for several tables (a firewall whose VMs live in two); with `table`, either.
  pub tables: Option<Vec<String>>,
  /// nftables: the table's family (7: bridge); default any.
  pub family: Option<u32>,
}

/// One event. `type` is `change` (an nf_tables object notification), `generation` (NFT_MSG_NEWGEN: the
/// end of a committed batch), `lost` (the kernel dropped notifications: the socket overran) or `packet`.
#[napi(object)]
#[derive(Default, Clone)]
pub struct NativeEvent {
  #[napi(js_name = "type")]
  pub kind: String,
  // change
  pub change: Option<String>,
  pub family: Option<u32>,
  pub table: Option<String>,
  pub chain: Option<String>,
  pub name: Option<String>,
  pub comment: Option<String>,
  pub handle: Option<f64>,
  pub keys: Option<Vec<String>>,
  pub targets: Option<Vec<String>>,
  pub port: Option<u32>,
  // generation
  pub generation: Option<u32>,
  pub pid: Option<u32>,
  pub process: Option<String>,
  /// The batch was committed by a thread of this process.
  pub own: Option<bool>,
  /// Changes of the batch left out (more than the thread holds per batch).
  pub omitted: Option<u32>,
  // packet
  pub prefix: Option<String>,
  pub ethertype: Option<u32>,
  pub hook: Option<u32>,
  pub indev: Option<String>,
  pub outdev: Option<String>,
  pub physindev: Option<String>,
  pub physoutdev: Option<String>,
  /// Milliseconds since the epoch (the kernel's stamp when it has one, else the time it was read).
  pub time: Option<f64>,
  pub ip_family: Option<u32>,
  pub protocol: Option<String>,
  pub src: Option<String>,
  pub dst: Option<String>,
  pub sport: Option<u32>,
  pub dport: Option<u32>,
  pub icmp_type: Option<u32>,
  pub icmp_code: Option<u32>,
}

#[napi(object)]
pub struct NativeBatch {
  pub events: Vec<NativeEvent>,
  /// Events discarded since the previous batch because the queue was full.
  pub dropped: f64,
  /// Set once: why the listener ended (`CLOSED`, `NETNS`, or the errno of a socket failure).
  pub ended: Option<NativeError>,
}

type Resolver = Box<dyn FnOnce(Env) -> Result<NativeBatch> + Send>;

#[derive(Default)]
struct Queue {
  events: VecDeque<NativeEvent>,
  dropped: u64,
  ended: Option<NativeError>,
  /// The end was handed to JavaScript.
  ended_delivered: bool,
  waiter: Option<JsDeferred<NativeBatch, Resolver>>,
}

struct Shared {
  queue: Mutex<Queue>,
  stop: AtomicBool,
  limit: usize,
}

impl Shared {
  fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
    self.queue.lock().unwrap_or_else(|p| p.into_inner())
  }

  /// Queues events (or counts them as dropped) and wakes a waiting `next()`.
  fn push(&self, events: impl IntoIterator<Item = NativeEvent>) {
    let mut q = self.lock();
    for event in events {
      if q.events.len() < self.limit {
        q.events.push_back(event);
      } else {
        q.dropped += 1;
      }
    }
    Self::wake(&mut q);
  }

  /// Queues one committed batch whole: when the queue lacks room for all its changes, the first ones that
  /// fit go with the generation event, which counts the rest in `omitted`. Only without room for the
  /// generation event itself is the batch dropped (and counted).
  fn push_batch(&self, mut changes: Vec<NativeEvent>, mut generation: NativeEvent) {
    let mut q = self.lock();
    let room = self.limit.saturating_sub(q.events.len());
    if room == 0 {
      q.dropped += changes.len() as u64 + 1;
    } else {
      if changes.len() >= room {
        // Table-level changes (a deleted table) first: they say the most and are at most a few.
        changes.sort_by_key(|c| !matches!(c.change.as_deref(), Some("newtable" | "deltable")));
        let cut = changes.len() - (room - 1);
        changes.truncate(room - 1);
        generation.omitted = Some(generation.omitted.unwrap_or(0).saturating_add(cut as u32));
      }
      q.events.extend(changes);
      q.events.push_back(generation);
    }
    Self::wake(&mut q);
  }

  fn end(&self, reason: NativeError) {
    let mut q = self.lock();
    if q.ended.is_none() {
      q.ended = Some(reason);
    }
    Self::wake(&mut q);
  }

  fn wake(q: &mut Queue) {
    if q.events.is_empty() && q.ended.is_none() {
      return;
    }
    if let Some(waiter) = q.waiter.take() {
      let batch = Self::take(q);
      waiter.resolve(Box::new(move |_| Ok(batch)));
    }
  }

  fn take(q: &mut Queue) -> NativeBatch {
    let n = q.events.len().min(BATCH);
    let events = q.events.drain(..n).collect();
    let dropped = std::mem::take(&mut q.dropped) as f64;
    let ended = if q.events.is_empty() && !q.ended_delivered {
      q.ended_delivered = q.ended.is_some();
      q.ended.clone()
    } else {
      None
    };
    NativeBatch { events, dropped, ended }
  }
}

/// A listener thread and its queue.
#[napi]
pub struct NativeListener {
  shared: Arc<Shared>,
  start_error: Option<NativeError>,
}

#[napi]
impl NativeListener {
  /// Starts the thread and waits until it has entered the namespace and opened (and for nflog bound)
  /// its socket. Never throws: a failure is kept in `startError`.
  #[napi(constructor)]
  pub fn new(options: NativeListenerOptions) -> Self {
    let shared = Arc::new(Shared {
      queue: Mutex::new(Queue::default()),
      stop: AtomicBool::new(false),
      limit: options.queue_limit.map_or(DEFAULT_QUEUE_LIMIT, |n| n.max(1) as usize),
    });
    let start_error = start(options, Arc::clone(&shared)).err();
    if let Some(e) = &start_error {
      shared.end(e.clone());
    }
    Self { shared, start_error }
  }

  #[napi(getter)]
  pub fn start_error(&self) -> Option<NativeError> {
    self.start_error.clone()
  }

  /// The next events: resolves at once when some are queued, else when the first arrives or the
  /// listener ends. After the batch that carries `ended`, resolves with no events. One call at a time.
  #[napi(ts_return_type = "Promise<NativeBatch>")]
  pub fn next<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
    let (deferred, promise) = env.create_deferred::<NativeBatch, Resolver>()?;
    let mut q = self.shared.lock();
    if !q.events.is_empty() || q.ended.is_some() {
      let batch = Shared::take(&mut q);
      drop(q);
      deferred.resolve(Box::new(move |_| Ok(batch)));
    } else if q.waiter.is_some() {
      drop(q);
      deferred.reject(Error::from_reason("next() is already waiting"));
    } else {
      q.waiter = Some(deferred);
    }
    Ok(promise)
  }

  /// Ends the listener: a waiting `next()` resolves with `ended: CLOSED`, the thread exits within
  /// one tick and closes its socket. Idempotent.
  #[napi]
  pub fn close(&self) {
    self.shared.stop.store(true, Ordering::Relaxed);
    self
      .shared
      .end(NativeError::binding("CLOSED", "the listener was closed"));
  }
}

impl Drop for NativeListener {
  fn drop(&mut self) {
    self.shared.stop.store(true, Ordering::Relaxed);
  }
}

enum Source {
  /// Changes of these tables (any table when empty) in `family` (any when None).
  Nftables {
    tables: Vec<String>,
    family: Option<u8>,
  },
  Nflog,
}

/// Changes held per batch until its NEWGEN arrives; the rest are counted.
const MAX_PENDING: usize = 1000;

/// The changes of the batch being received (filtered), until its NEWGEN.
#[derive(Default)]
struct Batch {
  changes: Vec<NativeEvent>,
  omitted: u32,
}

fn start(options: NativeListenerOptions, shared: Arc<Shared>) -> std::result::Result<(), NativeError> {
  let source = match options.kind.as_str() {
    "nftables" => Source::Nftables {
      tables: options.table.iter().chain(options.tables.iter().flatten()).cloned().collect(),
      family: options.family.and_then(|f| u8::try_from(f).ok()),
    },
    "nflog" => Source::Nflog,
    other => {
      return Err(NativeError::binding(
        "EINVAL",
        format!("unknown listener kind '{other}'"),
      ))
    }
  };
  let config = nflog::Config {
    group: u16::try_from(options.group.unwrap_or(0))
      .map_err(|_| NativeError::binding("EINVAL", "the log group must be 0..65535"))?,
    copy_range: options.copy_range.unwrap_or(128).clamp(40, 0xffff),
    timeout_cs: 5,
    qthresh: 64,
    nlbufsiz: 64 * 1024,
  };
  let (ready_tx, ready_rx) = std::sync::mpsc::channel();
  let netns = options.netns;
  std::thread::Builder::new()
    .name("nftables-node-listen".into())
    .spawn(move || {
      let opened = open(netns.as_deref(), &source, &config);
      let (socket, entered) = match opened {
        Ok(opened) => {
          let _ = ready_tx.send(Ok(()));
          opened
        }
        Err(e) => {
          let _ = ready_tx.send(Err(e));
          return;
        }
      };
      run(&socket, entered.as_ref(), &source, &shared);
    })
    .map_err(|e| NativeError::from_io("cannot start the listener thread", &e))?;
  ready_rx.recv().unwrap_or_else(|_| {
    Err(NativeError::binding(
      "INTERNAL",
      "the listener thread exited during start-up",
    ))
  })
}

fn io_error(what: &str, e: &std::io::Error) -> NativeError {
  match e.raw_os_error() {
    Some(errno) => crate::error::from_errno(errno, format!("{what}: {e}")),
    None => NativeError::binding("INTERNAL", format!("{what}: {e}")),
  }
}

fn open(
  netns: Option<&str>,
  source: &Source,
  config: &nflog::Config,
) -> std::result::Result<(Socket, Option<crate::netns::Entered>), NativeError> {
  let entered = netns.map(crate::netns::enter).transpose()?;
  let socket = Socket::open(TICK, SOCKET_BUFFER).map_err(|e| io_error("cannot open a netfilter netlink socket", &e))?;
  match source {
    Source::Nftables { .. } => socket
      .join(monitor::NFNLGRP_NFTABLES)
      .map_err(|e| io_error("cannot subscribe to nf_tables notifications", &e))?,
    Source::Nflog => {
      let _ = socket.no_enobufs();
      let mut buffer = vec![0u8; RECV_BUFFER];
      for (seq, request) in (1u32..).zip(nflog::bind_requests(config)) {
        socket
          .send(&request)
          .map_err(|e| io_error("cannot configure the log group", &e))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
          let received = socket
            .recv(&mut buffer)
            .map_err(|e| io_error("cannot configure the log group", &e))?;
          if let Some(errno) = received.and_then(|n| nflog::ack(&buffer[..n], seq)) {
            if errno != 0 {
              // The kernel answers EPERM when another socket owns the group's instance (and without
              // CAP_NET_ADMIN in the namespace's user namespace).
              let what = if errno == libc::EPERM || errno == libc::EBUSY {
                format!(
                  "cannot bind log group {}: another listener in this namespace has it (or CAP_NET_ADMIN is missing)",
                  config.group
                )
              } else {
                format!("cannot bind log group {}", config.group)
              };
              return Err(io_error(&what, &std::io::Error::from_raw_os_error(errno)));
            }
            break;
          }
          if Instant::now() > deadline {
            return Err(NativeError::binding(
              "ETIMEDOUT",
              "no answer to the log group configuration",
            ));
          }
        }
      }
    }
  }
  Ok((socket, entered))
}

fn now_ms() -> f64 {
  std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Whether `pid` (NFTA_GEN_PROC_PID: the committing task's id) is a thread of this process.
fn own_task(pid: u32) -> bool {
  pid == std::process::id() || std::path::Path::new(&format!("/proc/self/task/{pid}")).exists()
}

fn run(socket: &Socket, entered: Option<&crate::netns::Entered>, source: &Source, shared: &Shared) {
  let mut buffer = vec![0u8; RECV_BUFFER];
  let mut checked = Instant::now();
  let mut names: HashMap<u32, String> = HashMap::new();
  let mut batch = Batch::default();
  while !shared.stop.load(Ordering::Relaxed) {
    if checked.elapsed() >= NETNS_CHECK {
      checked = Instant::now();
      if let Some(Err(e)) = entered.map(crate::netns::Entered::check) {
        return shared.end(NativeError::binding("NETNS", e));
      }
    }
    let received = match socket.recv(&mut buffer) {
      Ok(Some(n)) => n,
      Ok(None) => continue,
      Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
        // What was held can no longer be attributed to a batch.
        batch = Batch::default();
        shared.push([NativeEvent {
          kind: "lost".into(),
          ..NativeEvent::default()
        }]);
        continue;
      }
      Err(e) => return shared.end(io_error("cannot read from the netlink socket", &e)),
    };
    let datagram = &buffer[..received];
    match source {
      Source::Nftables { tables, family } => {
        for n in monitor::decode(datagram) {
          match n {
            Notification::Change(c) => {
              let wanted = (tables.is_empty() || tables.contains(&c.table)) && family.is_none_or(|f| f == c.family);
              if !wanted {
                continue;
              }
              // A table change is always held (one per table and batch): it says the most.
              if batch.changes.len() < MAX_PENDING || matches!(c.kind, "newtable" | "deltable") {
                batch.changes.push(notification_event(Notification::Change(c)));
              } else {
                batch.omitted += 1;
              }
            }
            Notification::Generation(g) => {
              let held = std::mem::take(&mut batch);
              let mut event = notification_event(Notification::Generation(g));
              // Our own batches, and batches that changed nothing watched, are not reported.
              if event.own == Some(true) || (held.changes.is_empty() && held.omitted == 0) {
                continue;
              }
              event.omitted = Some(held.omitted);
              shared.push_batch(held.changes, event);
            }
          }
        }
      }
      Source::Nflog => {
        let read_at = now_ms();
        if names.len() > 1024 {
          names.clear();
        }
        let events: Vec<_> = nflog::decode(datagram)
          .into_iter()
          .map(|p| packet_event(p, read_at, &mut names))
          .collect();
        shared.push(events);
      }
    }
  }
}

fn notification_event(n: Notification) -> NativeEvent {
  match n {
    Notification::Change(c) => NativeEvent {
      kind: "change".into(),
      change: Some(c.kind.into()),
      family: Some(c.family.into()),
      table: Some(c.table),
      chain: c.chain,
      name: c.name,
      comment: c.comment,
      handle: c.handle.map(|h| h as f64),
      keys: (!c.keys.is_empty()).then_some(c.keys),
      targets: (!c.targets.is_empty()).then_some(c.targets),
      port: Some(c.port),
      ..NativeEvent::default()
    },
    Notification::Generation(g) => NativeEvent {
      kind: "generation".into(),
      generation: Some(g.id),
      own: Some(g.pid.is_some_and(own_task)),
      pid: g.pid,
      process: g.process,
      port: Some(g.port),
      ..NativeEvent::default()
    },
  }
}

/// An interface name in the thread's namespace (cached: the index of a packet's port rarely changes).
fn ifname(index: Option<u32>, names: &mut HashMap<u32, String>) -> Option<String> {
  let index = index.filter(|&i| i != 0)?;
  if let Some(name) = names.get(&index) {
    return Some(name.clone());
  }
  let mut buffer = [0 as libc::c_char; libc::IF_NAMESIZE];
  // SAFETY: `buffer` has IF_NAMESIZE bytes, as if_indextoname requires; it writes a NUL-terminated name.
  let found = unsafe { libc::if_indextoname(index, buffer.as_mut_ptr()) };
  let name = if found.is_null() {
    index.to_string()
  } else {
    // SAFETY: on success the buffer holds a NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(buffer.as_ptr()) }
      .to_string_lossy()
      .into_owned()
  };
  names.insert(index, name.clone());
  Some(name)
}

fn packet_event(p: nflog::Packet, read_at: f64, names: &mut HashMap<u32, String>) -> NativeEvent {
  NativeEvent {
    kind: "packet".into(),
    prefix: Some(p.prefix),
    ethertype: Some(p.ethertype.into()),
    hook: Some(p.hook.into()),
    indev: ifname(p.indev, names),
    outdev: ifname(p.outdev, names),
    physindev: ifname(p.physindev, names),
    physoutdev: ifname(p.physoutdev, names),
    time: Some(p.timestamp_us.map_or(read_at, |us| us as f64 / 1000.0)),
    ip_family: p.family.map(u32::from),
    protocol: p.protocol,
    src: p.src,
    dst: p.dst,
    sport: p.sport.map(u32::from),
    dport: p.dport.map(u32::from),
    icmp_type: p.icmp_type.map(u32::from),
    icmp_code: p.icmp_code.map(u32::from),
    ..NativeEvent::default()
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn shared(limit: usize) -> Shared {
    Shared {
      queue: Mutex::new(Queue::default()),
      stop: AtomicBool::new(false),
      limit,
    }
  }

  fn change(kind: &str) -> NativeEvent {
    NativeEvent {
      kind: "change".into(),
      change: Some(kind.into()),
      ..NativeEvent::default()
    }
  }

  fn generation() -> NativeEvent {
    NativeEvent {
      kind: "generation".into(),
      ..NativeEvent::default()
    }
  }

  #[test]
  fn a_full_queue_counts_instead_of_growing() {
    let s = shared(3);
    s.push((0..10).map(|_| change("newrule")));
    let mut q = s.lock();
    assert_eq!((q.events.len(), q.dropped), (3, 7));
    let batch = Shared::take(&mut q);
    assert_eq!((batch.events.len(), batch.dropped), (3, 7.0));
    assert_eq!(q.dropped, 0);
  }

  #[test]
  fn a_batch_is_queued_whole_with_table_changes_first_and_the_rest_counted() {
    let s = shared(4);
    let mut changes: Vec<_> = (0..5).map(|_| change("delrule")).collect();
    changes.push(change("deltable"));
    s.push_batch(changes, generation());
    let q = s.lock();
    let kinds: Vec<_> = q
      .events
      .iter()
      .map(|e| e.change.clone().unwrap_or(e.kind.clone()))
      .collect();
    assert_eq!(kinds, ["deltable", "delrule", "delrule", "generation"]);
    assert_eq!(q.events.back().unwrap().omitted, Some(3));
    drop(q);
    // No room even for the generation event: the batch is dropped and counted.
    s.push_batch(vec![change("newrule")], generation());
    assert_eq!(s.lock().dropped, 2);
  }

  #[test]
  fn the_end_is_handed_over_once_after_the_last_events() {
    let s = shared(10);
    s.push([change("newrule")]);
    s.end(NativeError::binding("CLOSED", "closed"));
    let mut q = s.lock();
    let first = Shared::take(&mut q);
    assert_eq!(first.events.len(), 1);
    assert_eq!(first.ended.map(|e| e.code), Some("CLOSED".into()));
    assert!(Shared::take(&mut q).ended.is_none());
  }
}
