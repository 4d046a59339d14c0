#!/usr/bin/env python3
"""Writes a newc cpio archive of a directory tree to stdout: the kernel-matrix initramfs (init + modules).
Stdlib only, so CI needs no cpio binary. Owner and group are 0; no device nodes (the init mounts devtmpfs)."""
import os
import stat
import sys


def header(ino, mode, nlink, size, name):
    fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name) + 1, 0]
    return b"070701" + b"".join(b"%08X" % f for f in fields) + name + b"\0"


def pad(n):
    return b"\0" * ((4 - n % 4) % 4)


def main(root):
    out = sys.stdout.buffer
    ino = 1
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in sorted(dirnames) + sorted(filenames):
            entries.append(os.path.join(dirpath, n))
    for path in entries:
        rel = os.path.relpath(path, root).encode()
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            data = os.readlink(path).encode()
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                data = f.read()
        else:
            data = b""
        h = header(ino, st.st_mode, 2 if stat.S_ISDIR(st.st_mode) else 1, len(data), rel)
        out.write(h + pad(len(h)) + data + pad(len(data)))
        ino += 1
    h = header(0, 0, 1, 0, b"TRAILER!!!")
    out.write(h + pad(len(h)))


if __name__ == "__main__":
    main(sys.argv[1])
