"""Linux isolation layers for one executor worker, applied once, before the worker starts.

A worker is started as `python -I -S -c <bootstrap>`: this module, running in that process
while it is still single-threaded, enters namespaces, builds a private read-only mount view,
installs Landlock and seccomp, and then replaces itself (`execve`) with the worker interpreter
(`python -I -S`, `codex_jax.sandbox.worker`). The layers survive `execve`; ctypes does not, so
the process that runs samples has never loaded it. Each layer is tried and recorded; what the
machine refuses is skipped and named, never silent. The threat model is in `codex_jax.sandbox`.

Layers, in the order applied (names as they appear in each result's `sandbox` field):
    userns   a user namespace (only when not root: it is what lets the rest work unprivileged)
    mntns netns ipcns pidns   private mounts, no network (loopback down), private SysV IPC,
             and a PID namespace whose init is the worker, so its death kills every sample
    ro-root  every mount read-only; only a fresh tmpfs at the scratch root is writable
    masked   tmpfs over the home directories (the interpreter's own folders bound back),
             /run, /var/tmp, /dev/shm and /proc
    landlock writes only beneath the scratch root and to /dev/null; no TCP bind or connect;
             no abstract UNIX sockets or signals to processes outside the worker's domain
    seccomp  no ptrace, mount, namespaces, kernel keyring, BPF, io_uring, module loading, ...;
             sockets only of family AF_UNIX
    nnp      no_new_privs: no set-uid binary or file capability can raise privileges
    nocaps   (user namespace only) all capabilities dropped and not regained on execve
"""

import ctypes
import os
import pwd
import select
import struct
import sys

from codex_jax.sandbox.kernel_filters import (
    PR_SET_CHILD_SUBREAPER,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PDEATHSIG,
    check,
    drop_capabilities,
    landlock,
    libc,
    prctl,
    seccomp,
    syscall,
)

# unshare(2) / clone(2) flags.
CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount(2), mount_setattr(2), open_tree(2), move_mount(2).
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 0x1, 0x2, 0x4, 0x4000, 0x40000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 0x1, 0x2
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 0x1, os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442  # same on every 64-bit arch

MASKED_DIRECTORIES = ("/run", "/var/tmp", "/dev/shm")
SCRATCH_IN_NAMESPACE = "/tmp"
SCRATCH_TMPFS_OPTIONS = (
    "size=256m,nr_inodes=16384,mode=0711"  # bounds what samples can write in all
)


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    encode = lambda s: None if s is None else s.encode()
    check(
        libc().mount(
            encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)
        ),
        f"mount {target}",
    )


def enter_namespaces() -> list[str]:
    """Unshares mount, network, IPC and PID namespaces (plus a user namespace when not root)."""
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWPID
    uid, gid = os.geteuid(), os.getegid()
    attempts = [flags, flags | CLONE_NEWUSER] if uid == 0 else [flags | CLONE_NEWUSER]
    for attempt in attempts:
        if libc().unshare(attempt) == 0:
            break
    else:
        raise OSError(ctypes.get_errno(), f"unshare: {os.strerror(ctypes.get_errno())}")
    if attempt & CLONE_NEWUSER:
        # Map root inside to the invoking user: the worker gets capabilities over its own
        # namespaces only, and nothing it creates is owned by anyone but the invoking user.
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"0 {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"0 {gid} 1")
    names = {
        CLONE_NEWUSER: "userns",
        CLONE_NEWNS: "mntns",
        CLONE_NEWNET: "netns",
        CLONE_NEWIPC: "ipcns",
        CLONE_NEWPID: "pidns",
    }
    return [name for flag, name in names.items() if attempt & flag]


def become_pid1() -> None:
    """Forks into the new PID namespace; the original process waits and exits with the child.

    The evaluator holds the original process: killing it kills the child (parent-death
    signal), and the child is the namespace's init, so every sample dies with it.
    """
    parent_alive_read, parent_alive_write = os.pipe()  # EOF once the parent is gone
    child = os.fork()
    if child:
        for fd in (0, 1):
            os.close(fd)  # only the worker talks to the evaluator
        _, status = os.waitpid(child, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    os.close(parent_alive_write)
    prctl(PR_SET_PDEATHSIG, 9, "PR_SET_PDEATHSIG")
    if select.select([parent_alive_read], [], [], 0)[
        0
    ]:  # the parent died before the signal was armed
        os._exit(1)
    os.close(parent_alive_read)


def _interpreter_paths(extra: list[str]) -> list[str]:
    """Existing folders the worker interpreter needs, none inside another."""
    candidates = [
        sys.prefix,
        sys.exec_prefix,
        os.path.dirname(sys.executable),
        os.path.dirname(os.path.realpath(sys.executable)),
    ]  # a venv's python is a link out
    candidates += [p for p in sys.path + extra if p and os.path.isdir(p)]
    paths = sorted({os.path.realpath(p) for p in candidates})
    return [p for p in paths if not any(p != q and p.startswith(q + os.sep) for q in paths)]


def _home_directories() -> list[str]:
    homes = {"/root", os.path.expanduser("~"), pwd.getpwuid(os.geteuid()).pw_dir}
    return sorted(h for h in homes if os.path.isdir(h) and h != "/")


def _mask_keeping(directory: str, keep: list[str], options: str = "mode=0755,size=1m") -> None:
    """Covers `directory` with an empty tmpfs, then binds each path in `keep` back in place
    (clones of the mounts as they are now: read-only ones stay read-only)."""
    detached = [
        (
            p,
            syscall(
                SYS_OPEN_TREE,
                AT_FDCWD,
                p.encode(),
                OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE,
                what=f"open_tree {p}",
            ),
        )
        for p in keep
    ]
    _mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, options)
    for path, fd in detached:
        os.makedirs(path, exist_ok=True)
        syscall(
            SYS_MOVE_MOUNT,
            fd,
            b"",
            AT_FDCWD,
            path.encode(),
            MOVE_MOUNT_F_EMPTY_PATH,
            what=f"move_mount {path}",
        )
        os.close(fd)


def build_mount_view(keep_extra: list[str]) -> tuple[str, list[str]]:
    """Makes this mount namespace read-only except a fresh tmpfs scratch root; returns it.

    Must run inside a new mount namespace, as the init of a new PID namespace.
    """
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    keep = _interpreter_paths(keep_extra)
    for home in _home_directories():
        _mask_keeping(home, [p for p in keep if p.startswith(home + os.sep)])
    for directory in MASKED_DIRECTORIES:  # e.g. a virtualenv or checkout in /tmp stays visible
        if os.path.isdir(directory):
            _mask_keeping(directory, [p for p in keep if p.startswith(directory + os.sep)])
    attr = struct.pack("QQQQ", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    syscall(
        SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, attr, len(attr), what="mount_setattr /"
    )
    # The scratch tmpfs covers /tmp; an interpreter, virtualenv or checkout there comes back read-only.
    _mask_keeping(
        SCRATCH_IN_NAMESPACE,
        [p for p in keep if p.startswith(SCRATCH_IN_NAMESPACE + os.sep)],
        SCRATCH_TMPFS_OPTIONS,
    )
    _mount("tmpfs", "/proc", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=0555")
    return SCRATCH_IN_NAMESPACE, ["ro-root", "masked"]


def main() -> None:
    """Bootstrap entry point; never returns: it execs the worker (`codex_jax.sandbox.worker.main`).

    argv: the scratch folder, the isolation ("full" or "minimal"), the uid for samples (used
    when root), the CPU core the worker and its samples run on ("" for any), and the worker's
    `python -c` code. Plain arguments rather than JSON: every module imported here delays the
    worker's start (json, typing and platform took ~15 ms).
    """
    scratch, isolation, sample_uid, core, worker_code = sys.argv[1:]
    # For speed only: a sample runs on the core its worker just ran on, so the memory the fork
    # shares with it (and copies on write) is still in that core's caches.
    if core:
        try:
            os.sched_setaffinity(0, {int(core)})
        except OSError:
            pass
    layers: list[str] = []
    refused: list[str] = []

    def attempt(name: str, apply):
        try:
            return apply()
        except OSError as e:
            refused.append(f"{name} ({e.strerror or e})")
            return None

    if isolation == "full":
        namespaces = attempt("namespaces", enter_namespaces)
        if namespaces:
            layers += namespaces
            if "pidns" in namespaces:
                become_pid1()
            package_root = os.path.dirname(
                os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            )
            view = attempt("mount view", lambda: build_mount_view([package_root]))
            if view:
                scratch, view_layers = view
                layers += view_layers
    else:
        refused.append("namespaces (isolation='minimal' requested)")
    # Orphans of a sample re-parent to the worker, which kills them (survives execve).
    attempt("subreaper", lambda: prctl(PR_SET_CHILD_SUBREAPER, 1, "PR_SET_CHILD_SUBREAPER"))
    if attempt(
        "no_new_privs", lambda: prctl(PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS") or "nnp"
    ):
        layers.append("nnp")
    layers += filter(None, [attempt("landlock", lambda: landlock(scratch))])
    layers += filter(None, [attempt("seccomp", seccomp)])
    if "userns" in layers:
        layers += filter(None, [attempt("capabilities", drop_capabilities)])
    worker_arguments = [
        scratch,
        sample_uid,
        "pid1" if os.getpid() == 1 else "",
        ",".join(layers),
        "\n".join(refused),
    ]
    os.execve(
        sys.executable,
        [sys.executable, "-I", "-S", "-c", worker_code, *worker_arguments],
        dict(os.environ),
    )
