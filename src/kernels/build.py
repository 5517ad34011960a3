"""Build and load the package's C++ CPU kernels (``ops.Custom(func_type="aot")`` libraries).

One :class:`AotLibrary` per source file in ``csrc/`` (``lstm_gates.cc``, ``onednn_conv.cc``,
``fused_layers.cc``), compiled once per machine with the C++ compiler on PATH (``$CXX`` or
``g++``) into the cache folder (:func:`src.kernels.tuning.cache_dir`), as PyTorch's
``cpp_extension.load`` does:

* the file name hashes the sources (and the headers they include), the compiler and its
  version, the flags, the link arguments, the CPU's ISA flags (``-march=native`` code is per
  ISA) and what the library links against (oneDNN's version), so a change builds anew and a
  stale library is never loaded;
* a file lock beside the library: eight processes starting together compile once, the others
  wait and load it;
* a failed build is remembered beside it (``<name>.failed`` holds the compiler's reason): later
  processes do not retry, and report that reason (once per process); a changed source or
  compiler is another key, so it is tried again (``python -m src.kernels --rebuild`` forgets
  the failures);
* after the build the library is loaded once with ctypes and asked whether it fits what is
  loaded here (``check``: oneDNN's major version for ``onednn_conv``).

``ZOO_NO_CUSTOM_OPS=1`` turns every custom kernel off (they report "not available" and every
layer stays native). Importing this module costs nothing: standard library only.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading

from src.kernels.tuning import cache_dir, locked, machine_info

CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")  # the C++ sources
BUILD_TIMEOUT_S = 120
DISABLE_ENV = "ZOO_NO_CUSTOM_OPS"
_COMPILERS = {}  # compiler -> its version line, once per process


def compiler():
    """``(command, version line)`` of the C++ compiler (``$CXX`` or ``g++``); version None when
    it is not on PATH."""
    cxx = os.environ.get("CXX") or "g++"
    if cxx not in _COMPILERS:
        version = None
        if shutil.which(cxx):
            try:
                out = subprocess.run([cxx, "--version"], capture_output=True, text=True,
                                     timeout=20, check=False).stdout
                version = (out.strip().splitlines() or ["unknown version"])[0]
            except (OSError, subprocess.TimeoutExpired):
                version = None
        _COMPILERS[cxx] = version
    return cxx, _COMPILERS[cxx]


class AotLibrary:
    """A C++ source compiled on first use into the per-user cache folder.

    Args:
        source: path of the ``.cc`` file.
        flags: compiler flags (``-shared -fPIC`` included).
        link_args: a callable returning ``(args, None)`` (extra arguments after the source, e.g.
            ``-L... -l...``, evaluated at build time) or ``(None, reason)`` when the library
            cannot be built here (a missing dependency).
        headers: the package's headers the source includes (hashed with it).
        key_extra: a callable returning a string that also keys the build (the version of a
            library it links against).
        check: ``check(path) -> None or reason``, run once per process after the build (the
            library loaded with ctypes): a reason makes the library unavailable.
    """

    def __init__(self, source, flags, link_args=None, headers=(), key_extra=None, check=None):
        self.source = source
        self.headers = tuple(headers)
        self.flags = tuple(flags)
        self.link_args = link_args or (lambda: ((), None))
        self.key_extra = key_extra or (lambda: "")
        self.check = check
        self.name = os.path.splitext(os.path.basename(source))[0]
        self._lock = threading.Lock()
        self._available = None
        self.ops = {}  # per-process cache of the Custom primitives built on this library

    def library_path(self, cxx, version, link):
        digest = hashlib.sha256()
        for path in (self.source,) + self.headers:
            with open(path, "rb") as f:
                digest.update(f.read())
        digest.update("|".join((cxx, version or "") + self.flags + tuple(link)).encode())
        digest.update(self.key_extra().encode())
        digest.update(" ".join(sorted(machine_info()["flags"])).encode())
        return os.path.join(cache_dir(), f"{self.name}-{digest.hexdigest()[:16]}.so")

    def build(self):
        """``(path of the compiled library, None)`` (built now if needed) or ``(None, reason)``."""
        if sys.platform != "linux":
            return None, "needs Linux (MindSpore's CPU custom ops)"
        cxx, version = compiler()
        if version is None:
            return None, f"no C++ compiler ({cxx}) on PATH"
        link, reason = self.link_args()
        if link is None:
            return None, reason
        out = self.library_path(cxx, version, link)
        if os.path.exists(out):
            return out, None
        with locked(out):  # one compile per machine; the others wait here, then load it
            if os.path.exists(out):
                return out, None
            failed = remembered_failure(out)
            if failed:
                return None, failed
            os.makedirs(os.path.dirname(out), exist_ok=True)
            tmp = f"{out}.{os.getpid()}.tmp"
            try:
                proc = subprocess.run([cxx, *self.flags, "-o", tmp, self.source, *link],
                                      capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                                      check=False)
                error = None if proc.returncode == 0 else \
                    (proc.stderr.strip().splitlines() or ["?"])[-1]
            except (OSError, subprocess.TimeoutExpired) as err:
                error = str(err)
            if error:
                reason = f"{cxx} ({version}) failed: {error}"
                _remember_failure(out, reason)
                return None, reason
            os.replace(tmp, out)
        return out, None

    def availability(self):
        """``(True, library path)`` or ``(False, why not)``; decided once per process."""
        with self._lock:
            if self._available is None:
                if os.environ.get(DISABLE_ENV):
                    self._available = (False, f"{DISABLE_ENV} is set")
                else:
                    path, reason = self.build()
                    if path and self.check:
                        reason = self.check(path)
                        path = None if reason else path
                    self._available = (path is not None, path or reason)
            return self._available

    def require(self, what):
        """The library path; RuntimeError naming ``what`` and the reason when not available."""
        ok, detail = self.availability()
        if not ok:
            raise RuntimeError(f"{what} is not available here: {detail}")
        return detail

    def cached_op(self, key, make):
        """``make()`` once per process and ``key`` (Custom primitives are reused by every layer)."""
        with self._lock:
            if key in self.ops:
                return self.ops[key]
        op = make()
        with self._lock:
            return self.ops.setdefault(key, op)


def remembered_failure(library):
    """The reason a build of ``library`` failed before on this machine, or None."""
    try:
        with open(library + ".failed", encoding="utf-8") as f:
            return json.load(f).get("reason") or "failed before"
    except (OSError, ValueError, AttributeError):
        return None


def _remember_failure(library, reason):
    try:
        with open(library + ".failed", "w", encoding="utf-8") as f:
            json.dump({"reason": reason}, f)
    except OSError:  # a read-only cache: the next process tries again
        pass


def forget_failures():
    """Remove the remembered build failures (the next process builds again); returns them."""
    folder = cache_dir()
    names = [n for n in os.listdir(folder) if n.endswith(".failed")] if os.path.isdir(folder) else []
    for name in names:
        os.remove(os.path.join(folder, name))
    return names
