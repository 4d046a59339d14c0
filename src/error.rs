//! Turning libnftables' error text into a structured error with a stable code.
//!
//! libnftables reports failures only as text: `[location: ]Error: message`, then the offending
//! input line and a caret marker. The kernel's errno reaches that text through strerror(3), so the
//! binding maps it back by comparing against strerror of every errno in this same process (same
//! libc, same locale), and callers get `code`/`errno` instead of having to read English.

use std::ffi::CStr;
use std::sync::OnceLock;

use napi_derive::napi;

/// A failed libnftables call, as handed to JavaScript.
#[napi(object)]
#[derive(Debug, Clone, PartialEq)]
pub struct NativeError {
  /// Stable code: an errno name (`ENOENT`, `EEXIST`, `EPERM`, ...) when the failure carries one,
  /// `SYNTAX` for input libnftables could not parse, `EINVAL` for other rejected input, or one of
  /// `LIBNFTABLES_UNAVAILABLE`, `NETNS`, `CLOSED`, `INTERNAL`, `BATCH_REFUSED` (a `commitBatch` buffer that
  /// was not sent: malformed, or a message outside what it may carry), `GENERATION_MOVED` (a `commitBatch`
  /// with an expected generation that no longer holds: not sent) raised by the binding itself. A
  /// system call of the binding's own that fails for lack of resources keeps its errno name
  /// (`EMFILE`, `ENFILE`, `ENOMEM`).
  pub code: String,
  /// The errno value behind `code`, when there is one.
  pub errno: Option<i32>,
  /// The first error's message, e.g. `Could not process rule: No such file or directory`.
  pub message: String,
  /// Everything libnftables printed (also what it wrote to stdout/stderr, which never reach the
  /// process's), with the quoted input line and caret marker; for nft text input exactly what
  /// `nft -f -` prints for the same text followed by a newline (the way `nft 'text'` reads it).
  pub detail: String,
  /// 1-based line of the failing command in nft text input.
  pub line: Option<u32>,
  /// 1-based first column of the marked span in that line.
  pub column: Option<u32>,
  /// Index of the failing command in a JSON document's `nftables` array.
  pub index: Option<u32>,
}

impl NativeError {
  /// An error raised by the binding itself rather than by libnftables.
  pub fn binding(code: &str, message: impl Into<String>) -> Self {
    let message = message.into();
    Self {
      code: code.into(),
      errno: None,
      detail: message.clone(),
      message,
      line: None,
      column: None,
      index: None,
    }
  }
}

impl NativeError {
  /// A failed system call of the binding's own, coded by its errno (`EMFILE`, `ENOMEM`, ...).
  pub fn from_io(what: &str, error: &std::io::Error) -> Self {
    let errno = error.raw_os_error();
    let name = errno
      .and_then(|n| ERRNO_NAMES.iter().find(|(e, _)| *e == n))
      .map(|(_, name)| *name);
    Self {
      errno: name.and(errno),
      ..Self::binding(name.unwrap_or("INTERNAL"), format!("{what}: {error}"))
    }
  }
}

/// Names of the errno values a netlink or libnftables failure can carry.
const ERRNO_NAMES: &[(i32, &str)] = &[
  (libc::EPERM, "EPERM"),
  (libc::ENOENT, "ENOENT"),
  (libc::ESRCH, "ESRCH"),
  (libc::EINTR, "EINTR"),
  (libc::EIO, "EIO"),
  (libc::ENXIO, "ENXIO"),
  (libc::E2BIG, "E2BIG"),
  (libc::EBADF, "EBADF"),
  (libc::EAGAIN, "EAGAIN"),
  (libc::ENOMEM, "ENOMEM"),
  (libc::EACCES, "EACCES"),
  (libc::EFAULT, "EFAULT"),
  (libc::EBUSY, "EBUSY"),
  (libc::EEXIST, "EEXIST"),
  (libc::ENODEV, "ENODEV"),
  (libc::ENOTDIR, "ENOTDIR"),
  (libc::EINVAL, "EINVAL"),
  (libc::ENFILE, "ENFILE"),
  (libc::EMFILE, "EMFILE"),
  (libc::EFBIG, "EFBIG"),
  (libc::ENOSPC, "ENOSPC"),
  (libc::ERANGE, "ERANGE"),
  (libc::ENAMETOOLONG, "ENAMETOOLONG"),
  (libc::ENOSYS, "ENOSYS"),
  (libc::ENOTEMPTY, "ENOTEMPTY"),
  (libc::ELOOP, "ELOOP"),
  (libc::ENODATA, "ENODATA"),
  (libc::EPROTO, "EPROTO"),
  (libc::EBADMSG, "EBADMSG"),
  (libc::EOVERFLOW, "EOVERFLOW"),
  (libc::EMSGSIZE, "EMSGSIZE"),
  (libc::EPROTONOSUPPORT, "EPROTONOSUPPORT"),
  (libc::EOPNOTSUPP, "EOPNOTSUPP"),
  (libc::EAFNOSUPPORT, "EAFNOSUPPORT"),
  (libc::ENOBUFS, "ENOBUFS"),
  (libc::ETIMEDOUT, "ETIMEDOUT"),
  (libc::ECONNREFUSED, "ECONNREFUSED"),
];

/// An error from an errno the binding got itself (a socket call, a netlink reply): `code` is the
/// errno's name when it is one of the above, `INTERNAL` otherwise.
pub fn from_errno(errno: i32, message: impl Into<String>) -> NativeError {
  let name = ERRNO_NAMES
    .iter()
    .find(|&&(e, _)| e == errno)
    .map_or("INTERNAL", |&(_, name)| name);
  let mut error = NativeError::binding(name, message);
  error.errno = Some(errno);
  error
}

/// strerror text of each errno above, longest first so that a longer text wins over a text it contains.
fn errno_texts() -> &'static [(String, i32, &'static str)] {
  static TEXTS: OnceLock<Vec<(String, i32, &'static str)>> = OnceLock::new();
  TEXTS.get_or_init(|| {
    let mut texts: Vec<_> = ERRNO_NAMES
      .iter()
      .map(|&(errno, name)| {
        // SAFETY: strerror returns a valid NUL-terminated string; it is copied at once, and this
        // runs once under OnceLock, so no other thread races on strerror's static buffer here.
        let text = unsafe { CStr::from_ptr(libc::strerror(errno)) }
          .to_string_lossy()
          .into_owned();
        (text, errno, name)
      })
      .collect();
    texts.sort_by_key(|(text, _, _)| std::cmp::Reverse(text.len()));
    texts
  })
}

/// One `Error:` record of libnftables' error output.
#[derive(Debug, PartialEq)]
struct Record<'a> {
  line: Option<u32>,
  column: Option<u32>,
  message: &'a str,
}

/// Splits `file:line:first-last: Error: message` (the location part is optional or partial).
fn parse_record(header: &str) -> Option<Record<'_>> {
  let at = header.find("Error: ")?;
  let message = header[at + "Error: ".len()..].trim_end();
  let location = header[..at].trim_end().trim_end_matches(':');
  let mut parts = location.rsplitn(3, ':');
  let columns = parts.next().unwrap_or("");
  let line = parts.next().and_then(|l| l.parse::<u32>().ok()).filter(|&l| l > 0);
  let column = line
    .and(columns.split('-').next())
    .and_then(|c| c.parse::<u32>().ok())
    .filter(|&c| c > 0);
  Some(Record { line, column, message })
}

/// The index libnftables' JSON parser names in "Parsing command array at index N failed."
fn json_parse_index(text: &str) -> Option<u32> {
  let rest = &text[text.find("command array at index ")? + "command array at index ".len()..];
  rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Builds the structured error from libnftables' error text. `input_name` is a name the text was
/// read from other than /dev/stdin (shown as /dev/stdin in `detail`, so that it reads exactly as
/// `nft -f -` prints it), `json` says whether the input was JSON.
pub fn parse(error_text: &str, input_name: Option<&str>, json: bool) -> NativeError {
  let detail = match input_name {
    Some(name) => error_text.replace(name, crate::context::STDIN_NAME),
    None => error_text.to_owned(),
  };
  let detail = detail.trim_end().to_owned();
  let Some(record) = error_text.lines().find_map(parse_record) else {
    let message = if detail.is_empty() {
      "libnftables failed without an error message".into()
    } else {
      detail.clone()
    };
    return NativeError {
      code: "EINVAL".into(),
      errno: None,
      message,
      detail,
      line: None,
      column: None,
      index: None,
    };
  };
  let errno = errno_texts()
    .iter()
    .find(|(text, _, _)| record.message.contains(text.as_str()));
  let index = if json { json_parse_index(error_text) } else { None };
  let code = match errno {
    Some((_, _, name)) => (*name).to_owned(),
    None if record.message.starts_with("syntax error") || index.is_some() => "SYNTAX".into(),
    None => "EINVAL".into(),
  };
  NativeError {
    code,
    errno: errno.map(|(_, errno, _)| *errno),
    message: record.message.to_owned(),
    detail,
    line: if json { None } else { record.line },
    column: if json { None } else { record.column },
    index,
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn kernel_errno_is_mapped_with_line_and_column() {
    let text = "/proc/self/fd/7:4:19-24: Error: Could not process rule: No such file or directory\n\
                add rule bridge t nosuch accept\n                  ^^^^^^\n\
                /proc/self/fd/7:5:21-28: Error: Could not process rule: Protocol error\n\
                add rule bridge t c ct state established accept\n                    ^^^^^^^^\n";
    let e = parse(text, Some("/proc/self/fd/7"), false);
    assert_eq!(e.code, "ENOENT");
    assert_eq!(e.errno, Some(libc::ENOENT));
    assert_eq!((e.line, e.column), (Some(4), Some(19)));
    assert_eq!(e.message, "Could not process rule: No such file or directory");
    assert!(e.detail.starts_with("/dev/stdin:4:19-24: Error:"), "{}", e.detail);
    assert!(e.detail.contains("^^^^^^"));
  }

  #[test]
  fn each_errno_the_kernel_reports_keeps_its_name() {
    for (errno, name) in [
      (libc::EEXIST, "EEXIST"),
      (libc::EBUSY, "EBUSY"),
      (libc::EPERM, "EPERM"),
      (libc::EPROTO, "EPROTO"),
      (libc::EOPNOTSUPP, "EOPNOTSUPP"),
    ] {
      // SAFETY: strerror returns a valid NUL-terminated string that is copied at once.
      let text = unsafe { CStr::from_ptr(libc::strerror(errno)) }
        .to_string_lossy()
        .into_owned();
      let e = parse(&format!("Error: Could not process rule: {text}\n"), None, false);
      assert_eq!((e.code.as_str(), e.errno), (name, Some(errno)));
    }
  }

  #[test]
  fn cache_lookup_failures_carry_their_errno() {
    let e = parse("Error: No such file or directory; did you mean table ‘t’ in family bridge?\ndelete table bridge zz\n                    ^^\n", None, false);
    assert_eq!(e.code, "ENOENT");
    assert_eq!(e.line, None);
  }

  #[test]
  fn parser_errors_are_syntax() {
    let e = parse("/proc/self/fd/9:3:20-22: Error: syntax error, unexpected fwd, expecting string\nadd chain bridge t fwd\n                   ^^^\n", Some("/proc/self/fd/9"), false);
    assert_eq!(
      (e.code.as_str(), e.errno, e.line, e.column),
      ("SYNTAX", None, Some(3), Some(20))
    );
  }

  #[test]
  fn json_schema_errors_are_syntax_with_the_command_index() {
    let text = "internal:0:0-0: Error: Unknown statement object 'bogus'.\n\ninternal:0:0-0: Error: Parsing expr array at index 0 failed.\n\ninternal:0:0-0: Error: Parsing command array at index 2 failed.\n\n";
    let e = parse(text, None, true);
    assert_eq!((e.code.as_str(), e.index, e.line), ("SYNTAX", Some(2), None));
    assert_eq!(e.message, "Unknown statement object 'bogus'.");
  }

  #[test]
  fn json_kernel_errors_have_no_index_in_the_text() {
    let e = parse(
      "internal:0:0-0: Error: Could not process rule: File exists\n\n",
      None,
      true,
    );
    assert_eq!((e.code.as_str(), e.index), ("EEXIST", None));
  }

  #[test]
  fn evaluation_errors_without_errno_are_einval() {
    let e = parse(
      "/proc/self/fd/3:1:30-34: Error: Service out of range\n",
      Some("/proc/self/fd/3"),
      false,
    );
    assert_eq!((e.code.as_str(), e.errno, e.line), ("EINVAL", None, Some(1)));
  }

  #[test]
  fn an_empty_error_buffer_still_gives_an_error() {
    let e = parse("", None, false);
    assert_eq!(e.code, "EINVAL");
    assert!(!e.message.is_empty());
  }
}
