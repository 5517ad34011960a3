"""What keeps a training run's output folder sane: one live run per folder, and a stop that says
how to resume.

* :class:`RunLock`: ``train.py`` (rank 0 of a distributed run; the other ranks write no files)
  holds ``<output_dir>/train.lock`` while it trains. The file holds the pid, the host and the
  start time of its run and carries an exclusive ``flock``, which the kernel drops when the
  process ends however it ends (``kill -9`` included). A second training started into the
  folder finds the lock held and stops with one line naming that run; a lock file whose process
  is gone is taken over (one line says so). On a file system without ``flock`` the pid and host
  in the file decide: a dead pid on this host is taken over, a live one (or another host's) is
  not.
* :func:`resume_hint_on_stop`: a training stopped by Ctrl-C (or ``kill``: SIGTERM) ends with one
  line naming the newest checkpoint and the command that resumes from it, and exit code 130,
  instead of a traceback or a log that just stops. MindSpore's runtime turns SIGINT into a
  SIGTERM of the process once it runs kernels, so both signals end here.
"""
import atexit
import contextlib
import errno
import functools
import json
import os
import shlex
import signal
import socket
import sys
import time

from src.model_utils.errors import UserError, writing

LOCK_FILE = "train.lock"
STOP_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for Ctrl-C

_HELD = {}  # lock path -> RunLock held by this process


def pid_alive(pid):
    """Whether a process ``pid`` exists on this host."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _flock(fd):
    """Take the exclusive lock of ``fd`` without waiting: True, False (held by another open file)
    or None (the file system has no flock)."""
    import fcntl
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return None
        raise


class RunLock:
    """The lock of one output folder (see the module doc); ``acquire()`` then ``release()``, or
    ``with RunLock(folder):``. Released at the latest when the process exits."""

    def __init__(self, folder, log=print):
        self.folder = os.path.abspath(folder)
        self.path = os.path.join(self.folder, LOCK_FILE)
        self.log = log
        self.fd = None
        self.made_folder = False  # the lock created the output folder: a run that fails leaves none

    def holder(self):
        """The ``{"pid", "host", "started"}`` written in the lock file ({} when unreadable)."""
        try:
            with open(self.path, encoding="utf-8") as f:
                info = json.loads(f.read() or "{}")
            return info if isinstance(info, dict) else {}
        except (OSError, ValueError):
            return {}

    def _busy(self, info):
        who = f"pid {info.get('pid', '?')} on {info.get('host', '?')}"
        since = f", started {info['started']}" if info.get("started") else ""
        return UserError(f"{self.folder} is in use by another training ({who}{since}): wait for it, "
                         f"stop it, or pass another --output_dir (if that run is gone, delete "
                         f"{self.path})")

    def acquire(self):
        previous = _HELD.pop(self.path, None)
        if previous is not None:  # an earlier train() of this process that ended by an error
            previous.release()
        self.made_folder = not os.path.isdir(self.folder)
        os.makedirs(self.folder, exist_ok=True)
        for _ in range(20):
            with writing(self.path):
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            got = _flock(fd)
            if got is False:
                os.close(fd)
                raise self._busy(self.holder())
            old = self.holder()
            if got is None and old.get("pid") and old.get("pid") != os.getpid() and (
                    old.get("host") != socket.gethostname() or pid_alive(old["pid"])):
                os.close(fd)
                raise self._busy(old)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:  # released (and deleted) between our open and our lock: open it again
                os.close(fd)
                continue
            if old.get("pid") and old.get("pid") != os.getpid() and self.log:
                self.log(f"{self.path}: taking over the lock of a run that ended without releasing "
                         f"it (pid {old['pid']} on {old.get('host', '?')})")
            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "started": time.strftime("%Y-%m-%d %H:%M:%S")}
            with writing(self.path):
                os.ftruncate(fd, 0)
                os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
            self.fd = fd
            _HELD[self.path] = self
            atexit.register(self.release)
            return self
        raise UserError(f"{self.path}: could not take the lock (it keeps changing): is another "
                        "training starting into this folder?")

    def release(self):
        """Delete the lock file (while still holding its lock, so no one locks a deleted file)
        and close it; the output folder too when the lock created it and nothing else was
        written into it (a run that failed early leaves no folder behind). Idempotent."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            if self.holder().get("pid") == os.getpid():
                os.remove(self.path)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = None
        if self.made_folder:
            with contextlib.suppress(OSError):  # not empty: the run wrote something, keep it
                os.rmdir(self.folder)
        if _HELD.get(self.path) is self:
            del _HELD[self.path]

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def holds_run_lock(func):
    """Decorator: the :class:`RunLock` objects ``func`` acquires are released when it returns or
    raises (``train`` takes its folder's lock once it knows its rank)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        before = set(_HELD.values())
        try:
            return func(*args, **kwargs)
        finally:
            for lock in set(_HELD.values()) - before:
                lock.release()

    return wrapper


class TrainingStopped(KeyboardInterrupt):
    """SIGTERM turned into an exception (Ctrl-C already is one: KeyboardInterrupt)."""


def _raise_stopped(signum, _frame):
    raise TrainingStopped(signal.Signals(signum).name)


def newest_checkpoint(output_dir):
    """The newest finished checkpoint of a run's ``checkpoints/`` folder, or None."""
    from src.checkpoint import latest_checkpoint
    try:
        return latest_checkpoint(os.path.join(os.path.abspath(output_dir), "checkpoints"))
    except UserError:
        return None


def stop_message(output_dir, script="train.py"):
    """The one line of a stopped training: its newest checkpoint and the command resuming from it
    (the run's saved config.yaml holds every setting it was started with)."""
    ckpt = newest_checkpoint(output_dir)
    config = os.path.join(os.path.abspath(output_dir), "config.yaml")
    if not ckpt or not os.path.isfile(config):
        return ("training stopped before its first checkpoint: nothing to resume from; run the "
                "same command again to start over")
    return (f"training stopped; newest checkpoint {ckpt}; resume with: python {shlex.quote(script)} "
            f"--config_path {shlex.quote(config)} --resume {shlex.quote(ckpt)}")


def _rank():
    """This process's rank in a distributed run (0 when communication is not initialised)."""
    with contextlib.suppress(Exception):
        from mindspore.communication import get_rank
        return get_rank()
    return 0


@contextlib.contextmanager
def resume_hint_on_stop(cfg, script=None):
    """Run the block (a training); on Ctrl-C or SIGTERM print :func:`stop_message` on stderr
    (rank 0 only) and exit with code 130."""
    script = script or (sys.argv[0] if os.path.basename(sys.argv[0]) == "train.py" else "train.py")
    previous = signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        yield
    except KeyboardInterrupt:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second kill ends the process at once
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if not cfg.get("run_distribute") or _rank() == 0:
            sys.stdout.flush()
            print(stop_message(cfg.output_dir, script), file=sys.stderr, flush=True)
        sys.exit(STOP_EXIT_CODE)
    finally:
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signal.SIGTERM, previous)
