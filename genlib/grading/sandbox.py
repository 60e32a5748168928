"""The grading sandbox: bubblewrap (``bwrap``), the sandbox Flatpak is built on.

Every submitted notebook runs in its own sandbox, and so does every grading worker (the process
where a learner's function runs while the judge checks it). A sandbox has

* a fresh, empty root: read-only views of the system folders (``/usr``, ``/etc``, …), of Python
  and its packages, and of this repository — with ``solutions/``, ``tests/``, ``.git``, the
  folders of every submission, the grader's own working folder and its output folders hidden
  under empty in-memory folders;
* one writable folder of its own (a private copy of the notebook, where ``check`` saves the
  learner's functions) and a private in-memory ``/tmp``;
* no network (``--unshare-net``: only a loopback interface of its own, which the Jupyter kernel
  uses), its own process namespace (``--unshare-pid``; when its first process ends, or the
  grader dies — ``--die-with-parent`` — the kernel kills every process it started: nothing
  outlives it), its own session, IPC and hostname namespaces;
* an unprivileged account: ``nobody`` when the grader runs as root (the mounts are made as root,
  then the sandbox drops to uid/gid 65534 with no capabilities and ``no_new_privs``), the
  grader's own uid inside a user namespace otherwise.

Because the mounts are made by the grader, the repository, the submissions and ``TMPDIR`` may
sit in private (mode 700) folders: the sandbox sees only the folders bound into it, and their
parents inside the sandbox are plain 0755 folders.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

NOBODY = 65534
ROOT = Path(__file__).resolve().parent.parent.parent
HIDDEN_IN_REPO = ("solutions", "tests", ".git")

# Printed by ``genlib grade --no-sandbox``: what is then not protected.
NOT_PROTECTED = """\
WARNING: grading WITHOUT a sandbox (--no-sandbox). Each notebook then runs as YOUR user, with
your files and network. The judge still computes every verdict in its own process and the
learner's functions still run in a separate worker with Python-level blocks, but a hostile
notebook can:
  * read and change any file you can (other submissions, solutions/, the CSV being written),
  * start processes that outlive it and interfere with later notebooks or the report,
  * use the network.
Grade untrusted notebooks only with bubblewrap installed (Linux: apt-get install bubblewrap)."""

_DROP = ("import os,sys;os.setgroups([]);os.setgid(%d);os.setuid(%d);"
         "os.execv(sys.argv[1],sys.argv[1:])" % (NOBODY, NOBODY))

_checked: str | None | bool = False


def bwrap() -> str | None:
    return shutil.which("bwrap")


def unavailable() -> str | None:
    """None when a sandbox can be made here, else a sentence saying why not (checked once)."""
    global _checked
    if _checked is not False:
        return _checked
    if not sys.platform.startswith("linux"):
        _checked = (f"the grading sandbox (bubblewrap) needs Linux; this is {sys.platform}")
    elif bwrap() is None:
        _checked = ("bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap; "
                    "Fedora: dnf install bubblewrap)")
    else:
        try:
            p = subprocess.run(command([sys.executable, "-S", "-c", "import os; print(os.getuid())"],
                                       env={}), capture_output=True, text=True, timeout=60)
            ok = p.returncode == 0 and p.stdout.strip() == str(NOBODY if os.geteuid() == 0
                                                               else os.getuid())
            _checked = None if ok else ("bubblewrap is installed but cannot make a sandbox here "
                                        f"({(p.stderr or p.stdout).strip()[:200]}); user "
                                        "namespaces may be disabled (e.g. inside a container)")
        except (OSError, subprocess.TimeoutExpired) as e:
            _checked = f"bubblewrap could not run ({e})"
    return _checked


def _inside(path: str, roots) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def visible_paths() -> list[str]:
    """What a sandbox sees read-only: Python, its packages and this repository."""
    cands = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable)), str(ROOT)]
    # sys.path, except the working folder that `python -m` or `python -c` puts there (the
    # instructor's folder: it may hold answers); genlib itself is reached through ROOT
    here = os.path.realpath(os.getcwd())
    cands += [p for p in sys.path if p and os.path.isdir(p)
              and (os.path.realpath(p) != here or _inside(here, [str(ROOT), sys.prefix]))]
    out: list[str] = []
    for p in sorted({os.path.realpath(c) for c in cands if c}, key=len):
        if p != "/" and not _inside(p, out) and not _inside(p, ["/usr", "/etc", "/proc", "/dev"]):
            out.append(p)
    return out


def command(argv: list[str], *, env: dict, writable: dict[str, str] | None = None,
            hide: list[str] = (), cwd: str | None = None, pass_env: bool = False) -> list[str]:
    """The ``bwrap`` command line that runs ``argv`` in a fresh sandbox.

    ``writable``: host folder → path in the sandbox, bound read-write (owned by the sandbox's
    account). ``hide``: host paths made empty in the sandbox (folders under a tmpfs, files under
    /dev/null) wherever they would otherwise be visible.
    """
    root = os.geteuid() == 0
    args = [bwrap() or "bwrap", "--die-with-parent", "--new-session", "--unshare-ipc",
            "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"] if root else ["--unshare-user"]
    bound: list[str] = []
    for p in ("/usr", "/etc"):
        if os.path.isdir(p):
            args += ["--ro-bind", p, p]
            bound.append(p)
    for p in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(p):
            args += ["--symlink", os.readlink(p), p]
        elif os.path.isdir(p):
            args += ["--ro-bind", p, p]
            bound.append(p)
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp",
             "--perms", "1777", "--tmpfs", "/dev/shm"]
    made = {"/", "/tmp", "/proc", "/dev"}

    def parents(path: str):
        out = []
        for parent in Path(path).parents:
            s = str(parent)
            if s in made or _inside(s, bound):
                break
            out.append(s)
        for s in reversed(out):
            args.extend(["--perms", "0755", "--dir", s])
            made.add(s)

    for p in visible_paths():
        parents(p)
        args += ["--ro-bind", p, p]
        bound.append(p)
    hidden = [os.path.realpath(h) for h in hide]
    hidden += [str(ROOT / h) for h in HIDDEN_IN_REPO]
    for h in sorted(set(hidden), key=len):
        if not os.path.lexists(h) or not _inside(h, bound):
            continue
        if any(_inside(b, [h]) for b in bound) or _inside(h, ["/usr", "/etc"]):
            continue  # something the sandbox needs, or its ancestor: its files are hidden instead
        if os.path.isdir(h) and not os.path.islink(h):
            args += ["--tmpfs", h]
        else:
            args += ["--ro-bind", "/dev/null", h]
    for src, dst in (writable or {}).items():
        parents(dst)
        args += ["--bind", src, dst]
    args += ["--clearenv"]
    for k, v in env.items():
        args += ["--setenv", k, str(v)]
    if cwd:
        args += ["--chdir", cwd]
    args.append("--")
    if root:
        args += [sys.executable, "-S", "-c", _DROP]
    return args + list(argv)


def own(path: str) -> None:
    """Give ``path`` (a folder the grader made for a sandbox) to the sandbox's account."""
    if os.geteuid() == 0:
        for dirpath, dirnames, filenames in os.walk(path):
            for n in [dirpath] + [os.path.join(dirpath, f) for f in dirnames + filenames]:
                os.lchown(n, NOBODY, NOBODY)


def base_env() -> dict:
    """The environment a sandboxed process starts with (nothing of the grader's own)."""
    env = {"PATH": os.path.dirname(sys.executable) + ":/usr/local/bin:/usr/bin:/bin",
           "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
           "PYTHONPATH": os.pathsep.join([str(ROOT)] + [p for p in os.environ.get(
               "PYTHONPATH", "").split(os.pathsep) if p and os.path.isabs(p)]),
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "MPLBACKEND": "Agg",
           "GENLIB_PROGRESS": "0", "MPLCONFIGDIR": "/tmp/mpl", "JUPYTER_RUNTIME_DIR": "/tmp/jr",
           "IPYTHONDIR": "/tmp/ipython", "JUPYTER_PLATFORM_DIRS": "1"}
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "GENLIB_BUDGET"):
        if k in os.environ:
            env[k] = os.environ[k]
    return env
