"""A seccomp filter that denies Unix sockets to sandboxed code.

A path-named Unix socket can sit anywhere a world-writable file can (a desktop bus, a database,
another tool's control socket), so hiding folders cannot prove that none is reachable. This
filter makes ``socket(AF_UNIX, ...)`` fail with ``EACCES`` instead, for the sandboxed process and
everything it starts (seccomp filters are inherited and cannot be removed). ``socketpair`` stays
allowed: an unnamed pair reaches nothing outside (Python's asyncio and multiprocessing use it).
``io_uring_setup`` is denied too, because io_uring can create sockets without the ``socket``
system call. System calls of a foreign ABI (32-bit ``int 0x80``, x32) are denied as a whole,
since their ``socketcall`` multiplexer would hide the socket family.

The program is twelve classic-BPF instructions (``struct sock_filter``), installed with
``prctl(PR_SET_SECCOMP)`` from the child just before it executes the sandbox's first command.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

# audit architecture and the native numbers of socket and io_uring_setup
_ARCHES = {
    "x86_64": (0xC000003E, 41, 425),
    "aarch64": (0xC00000B7, 198, 425),
}
_X32_BIT = 0x40000000
_AF_UNIX = 1

_LD_ABS_W = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
_ALLOW = 0x7FFF0000
_DENY = 0x00050000 | errno.EACCES  # SECCOMP_RET_ERRNO
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2

# offsets in struct seccomp_data: nr, arch, instruction pointer, args[6] (low word first)
_NR, _ARCH, _ARG0 = 0, 4, 16


def supported() -> bool:
    """Whether this machine's architecture has a filter here."""
    return platform.machine() in _ARCHES


def _program() -> bytes:
    arch, nr_socket, nr_io_uring = _ARCHES[platform.machine()]
    ins = [
        (_LD_ABS_W, 0, 0, _ARCH),
        (_JEQ_K, 1, 0, arch),  # native ABI: go on; else deny
        (_RET_K, 0, 0, _DENY),
        (_LD_ABS_W, 0, 0, _NR),
        (_JGE_K, 6, 0, _X32_BIT),  # x32 system call: deny
        (_JEQ_K, 5, 0, nr_io_uring),  # io_uring: deny
        (_JEQ_K, 1, 0, nr_socket),
        (_RET_K, 0, 0, _ALLOW),
        (_LD_ABS_W, 0, 0, _ARG0),  # socket(domain, ...): the domain's low word
        (_JEQ_K, 1, 0, _AF_UNIX),
        (_RET_K, 0, 0, _ALLOW),
        (_RET_K, 0, 0, _DENY),
    ]
    return b"".join(struct.pack("=HBBI", *i) for i in ins)


class UnixSocketFilter:
    """Built in the parent (no allocation after ``fork``); ``install()`` runs in the child."""

    def __init__(self) -> None:
        code = _program()
        self._buffer = ctypes.create_string_buffer(code, len(code))
        # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
        self._fprog = struct.pack("HxxxxxxP", len(code) // 8, ctypes.addressof(self._buffer))
        self._fprog_buffer = ctypes.create_string_buffer(self._fprog, len(self._fprog))
        self._prctl = ctypes.CDLL(None, use_errno=True).prctl
        self._prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]

    def install(self) -> None:
        """Apply the filter to the calling process and its future children (raises ``OSError``)."""
        # no_new_privs: a setuid binary cannot shed the filter, and an unprivileged caller may install it
        if self._prctl(_PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if self._prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(self._fprog_buffer), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
