"""User-facing errors: one line that names the fix, never a traceback."""
import functools
import sys


class UserError(Exception):
    """Bad input from the user (config, paths, data format). Printed as one line by entry scripts."""


def exit_on_user_error(main):
    """Decorator for entry-script ``main`` functions: print ``error: ...`` and exit 2 on bad input."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (UserError, FileNotFoundError, NotADirectoryError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"error: {msg}", file=sys.stderr)
            sys.exit(2)

    return wrapper
