//! A private file-descriptor table for the thread that calls libnftables.
//!
//! libnftables writes some messages straight to the process's stderr (for example "Operation not
//! permitted (you must be root)") and reads `nft -f -` input from fd 0. A thread can get its own
//! descriptor table with unshare(CLONE_FILES); in it, fds 0, 1 and 2 can be files of the binding's
//! own without touching the process's stdio, which every other thread keeps seeing:
//!
//! - fd 0 is a memory file that holds the text of the call being run, so text batches run as
//!   `nft -f -` does (located errors with the right line, in one run);
//! - fds 1 and 2 are one memory file that collects whatever libnftables prints outside its buffers,
//!   which then becomes part of the error instead of the service's stderr.
//!
//! Everything inherited is closed first, so the table holds only the binding's files: descriptors
//! the rest of the process closes are not kept alive here, and the process reaching its descriptor
//! limit (RLIMIT_NOFILE is checked against each table's own numbers) leaves this thread room.
//! Nothing that needs the process's descriptors may run on this thread: replies to JavaScript are
//! sent from another one (see `worker`).

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;

/// The thread's stdin and stdout/stderr files.
pub struct PrivateStdio {
  input: File,
  capture: File,
  /// Keeps fd 2 (a duplicate of `capture`) open.
  _stderr: OwnedFd,
}

impl PrivateStdio {
  /// Unshares the calling thread's descriptor table and installs the binding's files as 0, 1, 2.
  ///
  /// `Err(None)`: the table could not be unshared (e.g. a seccomp policy refuses unshare); nothing
  /// changed, the thread keeps the process's table. `Err(Some(e))`: a later step failed in the
  /// private table, which the thread can then no longer use.
  pub fn install() -> Result<Self, Option<std::io::Error>> {
    // SAFETY: unshare(CLONE_FILES) gives only the calling thread a copy of the descriptor table;
    // no memory is shared or invalidated.
    if unsafe { libc::unshare(libc::CLONE_FILES) } != 0 {
      return Err(None);
    }
    close_all().map_err(Some)?;
    let input = memory_file(c"nft-stdin", 0).map_err(Some)?;
    let capture = memory_file(c"nft-stdio", 1).map_err(Some)?;
    // SAFETY: `capture` is open; dup2 makes fd 2 a second descriptor of the same file, which the
    // OwnedFd below then owns (nothing else in this table uses fd 2 after close_all).
    let stderr = unsafe { libc::dup2(capture.as_raw_fd(), 2) };
    if stderr != 2 {
      return Err(Some(std::io::Error::last_os_error()));
    }
    Ok(Self {
      input,
      capture,
      // SAFETY: fd 2 was just created by dup2 and is owned by nothing else.
      _stderr: unsafe { OwnedFd::from_raw_fd(2) },
    })
  }

  /// Makes `text` the content of fd 0, read from the start.
  pub fn set_input(&mut self, text: &[u8]) -> std::io::Result<()> {
    self.input.write_all_at(text, 0)?;
    self.input.set_len(text.len() as u64)?;
    self.input.seek(SeekFrom::Start(0)).map(drop)
  }

  /// Releases the input's memory once the call has read it, when there is much of it (keeping a
  /// small input saves freeing and zeroing its pages again on the next call).
  pub fn clear_input(&mut self) {
    const KEEP: u64 = 1 << 20;
    if self.input.metadata().is_ok_and(|m| m.len() > KEEP) {
      let _ = self.input.set_len(0);
    }
  }

  /// What was written to fds 1 and 2 since the last call, which empties the file again (fds 1
  /// and 2 share its offset). Usually nothing, which costs one fstat.
  pub fn take_capture(&mut self) -> String {
    let len = self.capture.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
      return String::new();
    }
    let mut bytes = vec![0; usize::try_from(len).unwrap_or(0)];
    let read = self.capture.read_exact_at(&mut bytes, 0).is_ok();
    let _ = self.capture.set_len(0);
    let _ = self.capture.seek(SeekFrom::Start(0));
    if read {
      String::from_utf8_lossy(&bytes).into_owned()
    } else {
      String::new()
    }
  }
}

/// Closes every descriptor of the (private) table.
fn close_all() -> std::io::Result<()> {
  // SAFETY: close_range only closes descriptors; this thread's table is private, and nothing in
  // this thread holds one of them (the worker calls this before opening anything).
  if unsafe { libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) } == 0 {
    return Ok(());
  }
  // Kernels before 5.9: close what the table lists.
  let fds: Vec<RawFd> = std::fs::read_dir("/proc/thread-self/fd")?
    .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
    .collect();
  for fd in fds {
    // SAFETY: as above; closing a number that is no longer open (the directory's own) is harmless.
    unsafe { libc::close(fd) };
  }
  Ok(())
}

/// An anonymous memory file, which must get descriptor number `expected` (the lowest free one).
fn memory_file(name: &std::ffi::CStr, expected: RawFd) -> std::io::Result<File> {
  // SAFETY: `name` is NUL-terminated; the result is checked before use.
  let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
  if fd < 0 {
    return Err(std::io::Error::last_os_error());
  }
  // SAFETY: `fd` is a fresh descriptor that nothing else owns.
  let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
  if fd != expected {
    return Err(std::io::Error::other(format!(
      "memory file got descriptor {fd}, not {expected}"
    )));
  }
  Ok(file)
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::io::{Read, Write};
  use std::mem::ManuallyDrop;

  /// fd `n` of the calling thread's table as a File that is not closed on drop.
  fn fd(n: RawFd) -> ManuallyDrop<File> {
    // SAFETY: the File is never dropped, so it does not close a descriptor it does not own.
    ManuallyDrop::new(unsafe { File::from_raw_fd(n) })
  }

  #[test]
  fn a_thread_gets_its_own_stdio_and_the_process_keeps_its_own() {
    // SAFETY: fstat on fd 2 of the test process, into a zeroed plain struct.
    let stat2 = || unsafe {
      let mut st: libc::stat = std::mem::zeroed();
      (libc::fstat(2, &mut st) == 0).then_some((st.st_dev, st.st_ino))
    };
    let before = stat2();
    let (printed, read, table_size) = std::thread::spawn(|| {
      let mut stdio = PrivateStdio::install().expect("unshare(CLONE_FILES) is allowed here");
      stdio.set_input(b"add table bridge t\n").unwrap();
      let mut read = String::new();
      fd(0).read_to_string(&mut read).unwrap();
      fd(2).write_all(b"to stderr\n").unwrap();
      fd(1).write_all(b"to stdout\n").unwrap();
      let printed = stdio.take_capture();
      let table_size = std::fs::read_dir("/proc/thread-self/fd").unwrap().count();
      (printed, read, table_size)
    })
    .join()
    .unwrap();
    assert_eq!(read, "add table bridge t\n");
    assert_eq!(printed, "to stderr\nto stdout\n");
    // 0, 1, 2 and the directory being listed: nothing inherited.
    assert_eq!(table_size, 4);
    assert_eq!(stat2(), before);
  }
}
