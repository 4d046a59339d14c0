//! Network namespaces: which file a `netns` option names, entering it on the current thread only
//! without ever blocking on the file, and noticing later that the name no longer refers to it.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

use crate::error::NativeError;

/// Where `ip netns add NAME` puts its bind mounts.
const NETNS_RUN_DIR: &str = "/var/run/netns";
/// `f_type` of the namespace filesystem (`NSFS_MAGIC` in <linux/magic.h>).
const NSFS_MAGIC: i64 = 0x6e73_6673;
/// Longest file name `ip netns add` accepts (NAME_MAX).
const NAME_MAX: usize = 255;

/// Resolves `name`: a bare name is a namespace made by `ip netns add` and lives under
/// /var/run/netns; anything with a slash must be an absolute path (e.g. /proc/1234/ns/net). A
/// relative path would depend on the working directory, so it is refused rather than guessed.
pub fn resolve(name: &str) -> Result<PathBuf, String> {
  if name.contains('\0') {
    return Err("invalid network namespace name: it contains a NUL byte".into());
  }
  if name.contains('/') {
    if !name.starts_with('/') {
      return Err(format!(
        "network namespace path '{name}' is relative: give a bare name (a namespace under {NETNS_RUN_DIR}) \
         or an absolute path such as /proc/PID/ns/net"
      ));
    }
    return Ok(PathBuf::from(name));
  }
  if name.is_empty() || name == "." || name == ".." || name.len() > NAME_MAX {
    return Err(format!(
      "invalid network namespace name '{name}': a name under {NETNS_RUN_DIR} is 1 to {NAME_MAX} bytes, \
       not '.' or '..', without '/'"
    ));
  }
  Ok(PathBuf::from(NETNS_RUN_DIR).join(name))
}

/// The namespace a thread entered, remembered by the file that named it.
#[derive(Debug)]
pub struct Entered {
  path: PathBuf,
  dev: u64,
  ino: u64,
}

/// Moves the calling thread (not the process) into the network namespace `name` names.
///
/// setns(2) with CLONE_NEWNET changes only the calling thread, so the worker thread that owns a
/// libnftables context enters the namespace and every netlink socket it opens belongs there, while
/// Node's own threads stay where they are. The file is first opened with O_PATH, which neither
/// blocks (a FIFO would) nor has the side effects opening a device can have, and must be on nsfs;
/// only then is it opened for setns, non-blocking, and checked to be the same file.
///
/// Errors are `NETNS`, except running out of descriptors or memory, which keep their errno code.
pub fn enter(name: &str) -> Result<Entered, NativeError> {
  enter_path(name).map_err(|(message, errno)| match errno {
    Some(e @ (libc::EMFILE | libc::ENFILE | libc::ENOMEM)) => {
      NativeError::from_io(&message, &std::io::Error::from_raw_os_error(e))
    }
    _ => NativeError::binding("NETNS", message),
  })
}

fn enter_path(name: &str) -> Result<Entered, (String, Option<i32>)> {
  let path = resolve(name).map_err(|m| (m, None))?;
  let shown = path.display();
  let failed = |what: &str, e: &std::io::Error| (format!("{what} '{shown}': {e}"), e.raw_os_error());
  let open = |flags: libc::c_int| {
    OpenOptions::new()
      .read(true)
      .custom_flags(flags | libc::O_NOCTTY | libc::O_NONBLOCK)
      .open(&path)
      .map_err(|e| failed("cannot open network namespace", &e))
  };
  let located = open(libc::O_PATH)?;
  if !on_nsfs(&located) {
    return Err((
      format!(
        "'{shown}' is not a namespace file (expected a file on nsfs, such as /proc/PID/ns/net or a name made by \
         ip netns add)"
      ),
      None,
    ));
  }
  let file = open(0)?;
  let stat = |f: &File| f.metadata().map_err(|e| failed("cannot stat network namespace", &e));
  let (before, after) = (stat(&located)?, stat(&file)?);
  if (before.dev(), before.ino()) != (after.dev(), after.ino()) {
    return Err((format!("'{shown}' was replaced while it was being opened"), None));
  }
  // SAFETY: `file` is an open descriptor for the duration of the call; setns does not retain it.
  if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINVAL) {
      return Err((format!("'{shown}' is a namespace but not a network namespace"), None));
    }
    return Err(failed("cannot enter network namespace", &e));
  }
  Ok(Entered {
    dev: after.dev(),
    ino: after.ino(),
    path,
  })
}

impl Entered {
  /// Fails when the path no longer names the namespace this thread entered: `ip netns delete`
  /// removed it, or a new namespace was created under the same name. One stat(2), no open.
  pub fn check(&self) -> Result<(), String> {
    match std::fs::metadata(&self.path) {
      Ok(m) if (m.dev(), m.ino()) == (self.dev, self.ino) => Ok(()),
      _ => Err(format!(
        "network namespace '{}' was deleted or replaced after this instance entered it; \
         create a new instance to work in the namespace that now has that name",
        self.path.display()
      )),
    }
  }
}

fn on_nsfs(file: &File) -> bool {
  // SAFETY: an all-zero statfs is a valid value for this plain C struct; fstatfs only writes it.
  let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
  // SAFETY: `file` is open (O_PATH descriptors are accepted by fstatfs) and `fs` is writable.
  let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &mut fs) };
  #[allow(clippy::unnecessary_cast)] // f_type is i64 on some targets and narrower on others
  let magic = fs.f_type as i64;
  rc == 0 && magic == NSFS_MAGIC
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn bare_names_live_under_the_run_dir_and_paths_must_be_absolute() {
    assert_eq!(resolve("vm-test").unwrap(), PathBuf::from("/var/run/netns/vm-test"));
    assert_eq!(resolve("a..b").unwrap(), PathBuf::from("/var/run/netns/a..b"));
    assert_eq!(resolve("/proc/1/ns/net").unwrap(), PathBuf::from("/proc/1/ns/net"));
    for relative in ["../../proc/self/ns/net", "./x", "netns/x", "x/"] {
      let e = resolve(relative).unwrap_err();
      assert!(e.contains("relative"), "{relative}: {e}");
    }
  }

  #[test]
  fn invalid_names_are_rejected() {
    for name in ["", ".", "..", "a\0b", &"n".repeat(256)] {
      assert!(resolve(name).is_err(), "{name:?}");
    }
  }

  #[test]
  fn a_missing_namespace_is_an_error() {
    let err = enter("nftables-node-no-such-netns").unwrap_err();
    assert_eq!(err.code, "NETNS");
    assert!(
      err.message.contains("/var/run/netns/nftables-node-no-such-netns"),
      "{}",
      err.message
    );
  }

  #[test]
  fn files_that_are_not_namespaces_are_refused_without_opening_them() {
    // A regular file and a directory: not nsfs.
    for path in ["/proc/self/status", "/"] {
      let err = enter(path).unwrap_err().message;
      assert!(err.contains("not a namespace file"), "{path}: {err}");
    }
    let err = enter("/proc/self/ns/uts").unwrap_err().message;
    assert!(err.contains("not a network namespace"), "{err}");
  }
}
