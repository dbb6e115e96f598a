"""The kernel-enforced filters a worker installs on itself (Landlock, seccomp, capabilities), and
the ctypes calls into libc that `codex_jax.sandbox.isolation` makes.

Only the bootstrap imports this module (it holds ctypes): the worker it execs never has.
"""

import ctypes
import errno
import os
import struct

CLONE_NEW_ANY = 0x7E020080  # every CLONE_NEW* flag, CLONE_NEWTIME (0x80) included

# prctl(2).
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, PR_SET_CHILD_SUBREAPER = 1, 38, 22, 36
PR_SET_SECUREBITS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 28, 47, 4
SECBIT_NOROOT, SECBIT_NOROOT_LOCKED = 0x1, 0x2
SECCOMP_MODE_FILTER = 2

# Landlock (syscalls 444-446 on every 64-bit arch).
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
FS_WRITE_FILE, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 1, 1 << 14, 1 << 15
# Every right that changes the filesystem, by the ABI version that introduced it.
FS_WRITE_RIGHTS_BY_ABI = {1: 0b1_1111_1111_0010, 2: 1 << 13, 3: 1 << 14, 5: 1 << 15}
NET_BIND_TCP, NET_CONNECT_TCP = 1, 2
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1, 2

# seccomp BPF (x86_64 only: the syscall numbers below are x86_64's).
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_ERRNO, SECCOMP_RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
BPF_LD_W_ABS, BPF_JEQ_K, BPF_JGE_K, BPF_JSET_K, BPF_RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
X86_64_DENIED_SYSCALLS = {
    "ptrace": 101,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "kcmp": 312,
    "pidfd_getfd": 438,
    "mount": 165,
    "umount2": 166,
    "pivot_root": 155,
    "chroot": 161,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "mount_setattr": 442,
    "unshare": 272,
    "setns": 308,
    "keyctl": 250,
    "add_key": 248,
    "request_key": 249,
    "bpf": 321,
    "perf_event_open": 298,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "userfaultfd": 323,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "kexec_load": 246,
    "kexec_file_load": 320,
    "init_module": 175,
    "finit_module": 313,
    "delete_module": 176,
    "reboot": 169,
    "swapon": 167,
    "swapoff": 168,
    "acct": 163,
    "quotactl": 179,
    "syslog": 103,
    "vhangup": 153,
    "personality": 135,
    "iopl": 172,
    "ioperm": 173,
    "settimeofday": 164,
    "clock_settime": 227,
    "clock_adjtime": 305,
    "adjtimex": 159,
    "sethostname": 170,
    "setdomainname": 171,
    "uselib": 134,
}
X86_64_CLONE, X86_64_CLONE3, X86_64_SOCKET = 56, 435, 41
AF_UNIX = 1


def libc() -> ctypes.CDLL:
    handle = ctypes.CDLL(None, use_errno=True)
    handle.syscall.restype = ctypes.c_long
    return handle


def check(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


def syscall(number: int, *args: int | bytes | None, what: str) -> int:
    args = tuple(
        ctypes.c_long(a) if isinstance(a, int) else a for a in args
    )  # variadic: pass longs
    return check(libc().syscall(ctypes.c_long(number), *args), what)


def prctl(option: int, arg: int = 0, what: str = "prctl") -> None:
    check(libc().prctl(option, ctypes.c_ulong(arg), 0, 0, 0), what)


def landlock(scratch: str) -> str:
    """Allows filesystem changes only beneath `scratch` (and writes to /dev/null)."""
    abi = syscall(
        SYS_LANDLOCK_CREATE_RULESET,
        None,
        0,
        LANDLOCK_CREATE_RULESET_VERSION,
        what="landlock version",
    )
    write_rights = 0
    for version, rights in FS_WRITE_RIGHTS_BY_ABI.items():
        if abi >= version:
            write_rights |= rights
    net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scope = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    attr = struct.pack("QQQ", write_rights, net, scope)[: 24 if abi >= 6 else 16 if abi >= 4 else 8]
    ruleset = syscall(SYS_LANDLOCK_CREATE_RULESET, attr, len(attr), 0, what="landlock ruleset")
    file_rights = write_rights & (FS_WRITE_FILE | FS_TRUNCATE | FS_IOCTL_DEV)
    for path, rights in ((scratch, write_rights), ("/dev/null", file_rights)):
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        rule = struct.pack("=Qi", rights, fd)
        syscall(
            SYS_LANDLOCK_ADD_RULE,
            ruleset,
            LANDLOCK_RULE_PATH_BENEATH,
            rule,
            0,
            what=f"landlock rule {path}",
        )
        os.close(fd)
    syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0, what="landlock restrict")
    os.close(ruleset)
    return f"landlock-v{abi}"


def _bpf(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def seccomp_filter_program() -> bytes:
    """The x86_64 BPF program: deny dangerous syscalls, namespace clones and non-UNIX sockets."""
    errno_ret = lambda code: _bpf(BPF_RET_K, SECCOMP_RET_ERRNO | code)
    arg0_low = 16  # offsetof(struct seccomp_data, args[0]), little-endian low word
    program = [
        _bpf(BPF_LD_W_ABS, 4),  # arch
        _bpf(BPF_JEQ_K, AUDIT_ARCH_X86_64, jt=1),
        _bpf(BPF_RET_K, SECCOMP_RET_KILL_PROCESS),
        _bpf(BPF_LD_W_ABS, 0),  # syscall number
        _bpf(BPF_JGE_K, X32_SYSCALL_BIT, jf=1),  # the x32 ABI would bypass the numbers below
        errno_ret(errno.EPERM),
        _bpf(BPF_JEQ_K, X86_64_CLONE3, jf=1),  # its flags live in memory BPF cannot read;
        errno_ret(errno.ENOSYS),  # ENOSYS makes libc fall back to clone(2), checked below
    ]
    for number in sorted(X86_64_DENIED_SYSCALLS.values()):
        program += [_bpf(BPF_JEQ_K, number, jf=1), errno_ret(errno.EPERM)]
    program += [
        _bpf(BPF_JEQ_K, X86_64_CLONE, jf=4),
        _bpf(BPF_LD_W_ABS, arg0_low),
        _bpf(BPF_JSET_K, CLONE_NEW_ANY, jf=1),
        errno_ret(errno.EPERM),
        _bpf(BPF_RET_K, SECCOMP_RET_ALLOW),
        _bpf(BPF_JEQ_K, X86_64_SOCKET, jf=4),
        _bpf(BPF_LD_W_ABS, arg0_low),
        _bpf(BPF_JEQ_K, AF_UNIX, jt=1),
        errno_ret(errno.EAFNOSUPPORT),
        _bpf(BPF_RET_K, SECCOMP_RET_ALLOW),
        _bpf(BPF_RET_K, SECCOMP_RET_ALLOW),  # every other syscall
    ]
    return b"".join(program)


def seccomp() -> str:
    """Installs `seccomp_filter_program` (requires no_new_privs)."""
    machine = os.uname().machine
    if machine != "x86_64":
        raise OSError(errno.ENOSYS, f"seccomp filter written for x86_64, this is {machine}")
    program = seccomp_filter_program()
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = ctypes.create_string_buffer(
        struct.pack("HxxxxxxQ", len(program) // 8, ctypes.addressof(buffer))
    )
    check(libc().prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), fprog, 0, 0), "seccomp")
    return "seccomp"


def drop_capabilities() -> str:
    """Drops every capability and keeps root from regaining them on execve (user namespace)."""
    prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED, "PR_SET_SECUREBITS")
    check(
        libc().prctl(PR_CAP_AMBIENT, ctypes.c_ulong(PR_CAP_AMBIENT_CLEAR_ALL), 0, 0, 0),
        "ambient caps",
    )
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    check(libc().capset(header, bytes(24)), "capset")
    return "nocaps"
