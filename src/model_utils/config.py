"""YAML + command-line configuration.

Priority: command line > script defaults > YAML file (and the files it inherits) > defaults
(``config/default.yaml``). Script defaults are what an entry script passes as
``get_config(argv, default_config, script_defaults={...})``: e.g. export.py exports batch 1
whatever training batch the YAML holds, yet ``--batch_size 8`` still wins. A script default may
also add a key the YAML lacks (a script-only option such as preprocess.py's ``result_path``);
it is then typed and overridable like any other key.

A config file holds up to three YAML documents, as in the MindSpore model zoo:

1. the values (``key: value``); the optional key ``__base__`` names a file (relative to this one)
   whose values, help strings and choices are inherited and may be overridden;
2. help strings (``key: "what it means"``), shown by ``--help``;
3. choices (``key: [allowed, values]``).

Every key may be overridden on the command line as ``--key value`` or ``--key=value``; lists take
YAML flow syntax or commas (``--milestones 70,140`` or ``--milestones "[70, 140]"``). Keys not in
the YAML and values of the wrong type are rejected with one line (:class:`ConfigError`). Nothing
here reads ``sys.argv`` at import time: entry scripts call :func:`get_config`.
"""
import ast
import os
import sys

import yaml

from src.model_utils.errors import UserError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULTS_FILE = os.path.join(REPO_ROOT, "config", "default.yaml")
# the config an entry script reads when no --config_path is given (one place for all of them)
DEFAULT_CONFIG = "config/cifar10_config_cpu.yaml"
BASE_KEY = "__base__"


class ConfigError(UserError):
    """A bad config file or command-line override."""


class Config(dict):
    """A flat, read-only dict whose keys are also attributes (``cfg.batch_size``).

    The config of a run is what was asked for, so nothing changes it after :func:`get_config`:
    values derived later (class names from a checkpoint, another data folder) are passed as
    arguments, and :meth:`replace` makes a new config where one is really needed.
    """

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key '{name}'") from None

    def _read_only(self, *args, **kwargs):
        raise TypeError("the config is read-only after get_config(): pass derived values as "
                        "arguments, or make a new config with cfg.replace(key=value)")

    __setattr__ = __setitem__ = __delitem__ = _read_only
    update = pop = popitem = setdefault = clear = _read_only

    def replace(self, **changes):
        """A new config with ``changes`` applied (existing keys only)."""
        unknown = [k for k in changes if k not in self]
        if unknown:
            raise KeyError(f"config has no key(s) {unknown}")
        return Config({**self, **changes})

    def __reduce__(self):
        return Config, (dict(self),)

    def __repr__(self):
        return "\n".join(f"{k}: {v!r}" for k, v in sorted(self.items()))


def _read_yaml_docs(path):
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path} (pass --config_path config/<name>.yaml)")
    try:
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f)]
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise ConfigError(f"{path} is not valid YAML: {first}") from None
    docs = [d or {} for d in docs] + [{}] * (3 - len(docs))
    for d in docs[:3]:
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: each YAML document must be a mapping of key: value")
    return docs[0], docs[1], docs[2]


def load_yaml(path, _seen=None):
    """Load ``path`` with its ``__base__`` chain (and the defaults). Returns (values, helps, choices)."""
    path = os.path.abspath(path)
    seen = _seen or []
    if path in seen:
        raise ConfigError(f"config inheritance loop: {' -> '.join(seen + [path])}")
    values, helps, choices = _read_yaml_docs(path)
    base = values.pop(BASE_KEY, None)
    if base is not None:
        base_path = os.path.join(os.path.dirname(path), base)
        b_values, b_helps, b_choices = load_yaml(base_path, seen + [path])
    elif path != os.path.abspath(DEFAULTS_FILE) and os.path.isfile(DEFAULTS_FILE):
        b_values, b_helps, b_choices = load_yaml(DEFAULTS_FILE, seen + [path])
    else:
        b_values, b_helps, b_choices = {}, {}, {}
    for key in values:
        if key in b_values:
            _check_type(key, values[key], b_values[key], path)
    return {**b_values, **values}, {**b_helps, **helps}, {**b_choices, **choices}


def _type_name(value):
    return type(value).__name__


def _check_type(key, value, reference, where):
    """Raise ConfigError when ``value`` does not have the type of ``reference``."""
    if reference is None or value is None:
        return value
    if isinstance(reference, bool):
        ok = isinstance(value, bool)
    elif isinstance(reference, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
    elif isinstance(reference, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(reference, (list, tuple)):
        ok = isinstance(value, (list, tuple))
        if ok and reference and value:
            for item in value:
                _check_type(key, item, reference[0], where)
    else:
        ok = isinstance(value, type(reference))
    if not ok:
        raise ConfigError(f"{where}: '{key}' must be {_type_name(reference)} "
                          f"(like {reference!r}), got {value!r}")
    return value


def _parse_cli_value(text, reference):
    """Turn a command-line string into a value of the reference's type."""
    if isinstance(reference, str):
        return text
    if isinstance(reference, bool):
        low = text.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        return text
    if isinstance(reference, (list, tuple)) and not text.strip().startswith("["):
        text = "[" + text + "]" if text.strip() else "[]"
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
    return value


def parse_cli(argv):
    """Split argv into {key: raw string}; also returns whether --help was asked."""
    overrides, want_help, i = {}, False, 0
    while i < len(argv):
        token = argv[i]
        if token in ("-h", "--help"):
            want_help = True
            i += 1
            continue
        if not token.startswith("--") or len(token) == 2:
            raise ConfigError(f"unexpected argument '{token}': options are --key value "
                              "(run with --help to list the keys)")
        key = token[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(argv) or (argv[i + 1].startswith("--") and len(argv[i + 1]) > 2):
                raise ConfigError(f"option --{key} needs a value (--{key} VALUE)")
            raw = argv[i + 1]
            i += 2
        overrides[key.replace("-", "_")] = raw
    return overrides, want_help


def _format_help(path, values, helps, choices):
    lines = [f"usage: python {os.path.basename(sys.argv[0])} --config_path FILE [--key value ...]",
             f"config file: {path}", "", "options (default from the config file):"]
    for key in sorted(values):
        extra = f" choices: {choices[key]}." if key in choices else ""
        lines.append(f"  --{key} {values[key]!r}\n      {helps.get(key, '')}{extra}")
    return "\n".join(lines)


def get_config(argv=None, default_config=DEFAULT_CONFIG, script_defaults=None, script_helps=None):
    """Build the run's (read-only) config from ``--config_path`` (or ``default_config``) and CLI
    overrides.

    ``script_defaults`` ({key: value}) replace the YAML values (type-checked against them) and may
    add script-only keys; command-line options override both. ``script_helps`` ({key: text}):
    ``--help`` strings for those keys.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides, want_help = parse_cli(argv)
    path = overrides.pop("config_path", None) or default_config
    if path is None:
        raise ConfigError("no config given: pass --config_path config/<name>.yaml")
    if not os.path.isabs(path) and not os.path.exists(path):
        candidate = os.path.join(REPO_ROOT, path)
        path = candidate if os.path.exists(candidate) else path
    values, helps, choices = load_yaml(path)
    for key, value in (script_defaults or {}).items():
        values[key] = _check_type(key, value, values[key], "script default") if key in values else value
    helps = {**helps, **(script_helps or {})}
    if want_help:
        print(_format_help(path, values, helps, choices))
        sys.exit(0)
    for key, raw in overrides.items():
        if key not in values:
            close = [k for k in values if key in k or k in key][:3]
            hint = f" (did you mean {', '.join('--' + c for c in close)}?)" if close else ""
            raise ConfigError(f"unknown option --{key}: not a key of {os.path.basename(path)}{hint}")
        value = _parse_cli_value(raw, values[key])
        values[key] = _check_type(key, value, values[key], "command line")
    for key, allowed in choices.items():
        if key in values and values[key] not in allowed:
            raise ConfigError(f"'{key}' must be one of {allowed}, got {values[key]!r}")
    return Config(values, config_path=os.path.abspath(path))


def save_config(cfg, directory, name="config.yaml"):
    """Write the resolved config next to the checkpoints; returns the file path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    plain = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(plain, f, sort_keys=True, allow_unicode=True)
    return path


def load_saved_config(path):
    """Read a config written by :func:`save_config` (e.g. to evaluate with a run's settings)."""
    values, _, _ = _read_yaml_docs(path)
    return Config(values)
