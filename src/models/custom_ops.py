"""Build and load the repository's C++ CPU kernels (``ops.Custom(func_type="aot")`` libraries).

One :class:`AotLibrary` per source file (``lstm_gates.cc``, ``onednn_conv.cc``,
``fused_layers.cc``). It is compiled once per machine with the C++ compiler on PATH (``$CXX`` or
``g++``) into the cache folder of ``src.model_utils.cpu_tuning``; the file name hashes the source
(and the headers it includes), the compiler, the flags, the link arguments and the CPU's ISA flags
(``-march=native`` code is per ISA), so a changed source or another CPU builds anew and never
loads a stale library. ``ZOO_NO_CUSTOM_OPS=1`` turns every
custom kernel off (they then report "not available" and the callers fall back or refuse).

Importing this module costs nothing: standard library only.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import threading

BUILD_TIMEOUT_S = 120
DISABLE_ENV = "ZOO_NO_CUSTOM_OPS"


class AotLibrary:
    """A C++ source compiled on first use into the per-user cache folder.

    Args:
        source: path of the ``.cc`` file.
        flags: compiler flags (``-shared -fPIC`` included).
        link_args: a callable returning ``(args, None)`` (extra arguments after the source, e.g.
            ``-L... -l...``, evaluated at build time) or ``(None, reason)`` when the library
            cannot be built here (a missing dependency).
        headers: the repository's headers the source includes (hashed with it, so a changed
            header builds anew).
    """

    def __init__(self, source, flags, link_args=None, headers=()):
        self.source = source
        self.headers = tuple(headers)
        self.flags = tuple(flags)
        self.link_args = link_args or (lambda: ((), None))
        self.name = os.path.splitext(os.path.basename(source))[0]
        self._lock = threading.Lock()
        self._available = None
        self.ops = {}  # per-process cache of the Custom primitives built on this library

    def library_path(self, cxx, link):
        from src.model_utils.cpu_tuning import cache_path, machine_info
        digest = hashlib.sha256()
        for path in (self.source,) + self.headers:
            with open(path, "rb") as f:
                digest.update(f.read())
        digest.update("|".join((cxx,) + self.flags + tuple(link)).encode())
        digest.update(" ".join(sorted(machine_info()["flags"])).encode())
        return os.path.join(os.path.dirname(cache_path()),
                            f"{self.name}-{digest.hexdigest()[:16]}.so")

    def build(self):
        """``(path of the compiled library, None)`` (built now if needed) or ``(None, reason)``."""
        if sys.platform != "linux":
            return None, "needs Linux (MindSpore's CPU custom ops)"
        cxx = os.environ.get("CXX") or "g++"
        if not shutil.which(cxx):
            return None, f"no C++ compiler ({cxx}) on PATH"
        link, reason = self.link_args()
        if link is None:
            return None, reason
        out = self.library_path(cxx, link)
        if os.path.exists(out):
            return out, None
        os.makedirs(os.path.dirname(out), exist_ok=True)
        tmp = f"{out}.{os.getpid()}.tmp"
        try:
            proc = subprocess.run([cxx, *self.flags, "-o", tmp, self.source, *link],
                                  capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            return None, f"{cxx} failed: {err}"
        if proc.returncode != 0:
            return None, f"{cxx} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
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


def fused_kernel_policy(setting, device_target, key, env, settings, availability, what, log=print):
    """``'native'`` or ``'fused'``: whether a network uses one of these libraries' fused kernels.

    ``setting`` is the config value of ``key`` (one of ``settings``: auto, native, fused); the
    environment variable ``env`` overrides it. ``auto``: fused on CPU when the library builds
    here (``availability() -> (ok, path or reason)``), native otherwise (the reason is logged);
    ``fused`` on another device or without a compiler is a one-line error naming the fix.
    ``what``: the computation the kernels do, for the log line (one line unless native was
    asked for).
    """
    from src.model_utils.errors import UserError
    source = env if os.environ.get(env) else key
    setting = os.environ.get(env) or setting
    if setting not in settings:
        raise UserError(f"{source} must be one of {', '.join(settings)}, got {setting!r}")
    if setting == "native":
        return "native"
    if device_target != "CPU":
        if setting == "auto":
            return "native"
        raise UserError(f"{source} fused runs on CPU only (device_target {device_target}): "
                        f"pass --{key} native")
    ok, detail = availability()
    if not ok:
        if setting == "auto":
            if log:
                log(f"{key} auto: native (the fused kernels cannot be built here: {detail})")
            return "native"
        raise UserError(f"{source} fused: the fused kernels cannot be built here ({detail}); "
                        f"install g++ or pass --{key} native")
    if log:
        log(f"{key} {setting}: fused, {what} in {os.path.basename(detail)}")
    return "fused"
