"""User-facing errors: one line that names the fix, never a traceback.

The one rule of the repository: a *user error* (bad input, bad config, bad environment) is printed
as one line ``error: ...`` and the process exits with code 2; anything else is a bug and keeps
its traceback. :func:`user_message` is the single place that decides which is which:

* :class:`UserError` and its subclasses (``ConfigError``, :class:`DataError`, ...): raised where
  the bad input is found, with a message that says what to do;
* ``OSError`` of the environment (missing file, permission denied, read-only file system, disk
  full, ...): one line naming the path and the fix;
* ``RuntimeError`` raised by MindSpore that carries a UserError: dataset pipelines run Python
  sources in worker threads/processes and re-raise their errors as a RuntimeError whose text
  embeds ``DataError: <message>``; that message is dug out. MindSpore's own error for a corrupt
  file of a data set ("The corresponding data file is: F. Decode: image decode failed") is
  turned into one line naming F.

Entry scripts wrap ``main`` in :func:`exit_on_user_error`; argparse-based CLIs use
:class:`ArgumentParser` (its errors are UserErrors too). Writers use :func:`writing` so that an
``OSError`` while writing a file names that file and leaves no partial file behind.
"""
import argparse
import contextlib
import errno
import functools
import os
import re
import sys


class UserError(Exception):
    """Bad input from the user (config, paths, data format). Printed as one line by entry scripts."""


class DataError(UserError, ValueError):
    """A data file that is missing pieces, of the wrong shape, type or value range.

    Also a ``ValueError``, so callers that validate data with ``except ValueError`` keep working.
    """


# errno -> (what happened, what to do) for errors that come from the machine, not from the code
_OS_FIXES = {
    errno.ENOENT: ("not found", "check the path"),
    errno.ENOTDIR: ("not a directory", "check the path"),
    errno.EISDIR: ("is a directory, expected a file", "pass a file"),
    errno.EEXIST: ("a file is in the way", "remove it or pass another folder"),
    errno.ELOOP: ("too many levels of symbolic links", "fix the link"),
    errno.EACCES: ("permission denied", "fix the permissions or use another folder"),
    errno.EPERM: ("operation not permitted", "fix the permissions or use another folder"),
    errno.EROFS: ("read-only file system", "write the outputs to a writable folder "
                                           "(--output_dir, --result_dir or --file_name)"),
    errno.ENOSPC: ("no space left on the device", "free some space or write the outputs elsewhere"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or write the outputs elsewhere"),
    errno.EFBIG: ("file too large for the file system", "write the outputs elsewhere"),
    errno.ENAMETOOLONG: ("file name too long", "use a shorter path"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n) or lower num_parallel_workers"),
    errno.ENOMEM: ("out of memory", "lower batch_size or num_parallel_workers"),
}


def _first_line(text):
    text = str(text).strip()
    return text.splitlines()[0].strip() if text else ""


def os_error_message(exc, path=None):
    """The one line for an ``OSError`` of the environment (None for other errnos).

    ``path`` names the file when the error itself does not (``write()`` on a full disk)."""
    if exc.errno is None:  # raised by our own checks: FileNotFoundError("... pass --data_path")
        own = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
        return (_first_line(exc) or type(exc).__name__) if isinstance(exc, own) else None
    if exc.errno not in _OS_FIXES:
        return None
    what, fix = _OS_FIXES[exc.errno]
    where = exc.filename or path
    prefix = f"{where}: " if where else ""
    return f"{prefix}{what} ({errno.errorcode[exc.errno]}): {fix}"


def _user_error_names():
    """Class names of UserError and all its subclasses (as MindSpore prints them)."""
    names, todo = set(), [UserError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo += cls.__subclasses__()
    return names


def embedded_user_message(text):
    """The message of a UserError that MindSpore re-raised inside a RuntimeError's text, or None."""
    names = "|".join(sorted(_user_error_names()))
    found = re.findall(rf"^\s*(?:[\w.]+\.)?(?:{names}): (.+)$", str(text), flags=re.M)
    found = [m.strip() for m in found if not m.startswith("Traceback")]
    return found[-1] if found else None


_BAD_DATA_FILE = re.compile(r"The corresponding data file is: (.+?)\. (.+?)(?:\n|$)")


def bad_data_file_message(text):
    """One line for MindSpore's "map operation ... failed. The corresponding data file is: F.
    Decode: image decode failed." (a corrupt image in a folder data set), or None."""
    found = _BAD_DATA_FILE.findall(str(text))
    if not found:
        return None
    path, reason = found[-1]
    return f"{path}: {reason.strip().rstrip('.')}: the data file is corrupt or not supported; " \
           "remove or replace it"


def user_message(exc):
    """One line for a user error, or None when ``exc`` is a bug (and should keep its traceback)."""
    if isinstance(exc, UserError):
        return _first_line(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        return os_error_message(exc)
    if isinstance(exc, RuntimeError):
        return embedded_user_message(exc) or bad_data_file_message(exc)
    return None


def exit_on_user_error(main):
    """Decorator for entry-script ``main`` functions: print ``error: ...`` and exit 2 on a user
    error (see :func:`user_message`); a bug propagates with its traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except Exception as exc:  # pylint: disable=broad-except
            msg = user_message(exc)
            if msg is None:
                raise
            sys.stdout.flush()
            print(f"error: {msg}", file=sys.stderr, flush=True)
            sys.exit(2)

    return wrapper


@contextlib.contextmanager
def writing(path, partial=()):
    """Context for writing ``path``: an ``OSError`` inside becomes a one-line UserError naming
    ``path``, and the files in ``partial`` (temporary or half-written) are removed whatever the
    error."""
    try:
        yield
    except BaseException as exc:
        for name in partial:
            with contextlib.suppress(OSError):
                os.remove(name)
        if not isinstance(exc, OSError):
            raise
        # any OSError here is about writing ``path``; numpy's tofile() on a full disk raises one
        # without errno ("100000 requested and 8192 written")
        msg = os_error_message(exc, path) if exc.errno is not None else None
        raise UserError(msg or f"{path}: cannot be written ({_first_line(exc) or type(exc).__name__}): "
                               "check the free space and the permissions of its folder") from exc


def make_parent_folder(path):
    """Make the folder ``path`` goes in, if missing; one line when a file stands in its way."""
    folder = os.path.dirname(os.path.abspath(path))
    blocker = folder
    while blocker and not os.path.exists(blocker):
        blocker = os.path.dirname(blocker)
    if not os.path.isdir(blocker):
        raise UserError(f"{path}: cannot be written, {blocker} is a file, not a folder: choose another path")
    os.makedirs(folder, exist_ok=True)


def atomic_write_text(path, text):
    """Write ``text`` (str, UTF-8; or bytes) to ``path`` through ``path + '.tmp'`` and a rename
    (its folder is made if missing): readers never see a half-written file, and a failed write
    leaves neither the temporary nor a partial file."""
    tmp = path + ".tmp"
    data = text.encode("utf-8") if isinstance(text, str) else text
    with writing(path, partial=[tmp]):
        make_parent_folder(path)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the small CLIs: a bad argument is a one-line UserError, not usage + exit."""

    def error(self, message):
        raise UserError(f"{message} (run with --help for the options)")
