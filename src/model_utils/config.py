"""YAML + command-line configuration.

Priority: command line > script defaults > YAML file (and the files it inherits) > defaults
(``config/default.yaml``). Script defaults are what an entry script passes as
``get_config(argv, default_config, script_defaults={...})``: e.g. export.py exports batch 1
whatever training batch the YAML holds, yet ``--batch_size 8`` still wins. A script default may
also add a key the YAML lacks (a script-only option such as preprocess.py's ``result_path``);
it is then typed and overridable like any other key.

A config file holds up to four YAML documents (the first three as in the MindSpore model zoo):

1. the values (``key: value``); the optional key ``__base__`` names a file (relative to this one)
   whose values, help strings, choices and ranges are inherited and may be overridden;
2. help strings (``key: "what it means"``), shown by ``--help``;
3. choices (``key: [allowed, values]``);
4. ranges of numeric keys (``lr: "> 0"``, ``min_crop_scale: "(0, 1]"``,
   ``input_kernel: ">= 1 and odd"``, ``image_size: ">= 1 and multiple of patch_size"``); for a
   list the range applies to each item. Grammar: clauses joined by ``and``; a clause is
   ``> x``, ``>= x``, ``< x``, ``<= x``, an interval ``(a, b]`` (brackets include the end),
   ``odd``, or ``multiple of N`` where N is a number or another key.

A file may only set keys that ``config/default.yaml`` or a file of its ``__base__`` chain
declares; it declares a new key by giving it a help string in its own second document. Any other
key is a typo (``batch_sise: 8``) and is refused with one line naming the closest known keys.

Every key may be overridden on the command line as ``--key value`` or ``--key=value``; lists take
YAML flow syntax or commas (``--milestones 70,140`` or ``--milestones "[70, 140]"``). Keys not in
the YAML, values of the wrong type, outside their choices or outside their range are rejected
with one line (:class:`ConfigError`); ranges are checked once the command line is applied.
Nothing here reads ``sys.argv`` at import time: entry scripts call :func:`get_config`.
"""
import ast
import difflib
import math
import os
import re
import sys

import yaml

from src.model_utils.errors import UserError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULTS_FILE = os.path.join(REPO_ROOT, "config", "default.yaml")
# the config an entry script reads when no --config_path is given (one place for all of them)
DEFAULT_CONFIG = "config/cifar10_config_cpu.yaml"
BASE_KEY = "__base__"
DOCUMENTS = ("values", "helps", "choices", "ranges")


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
    """The four documents of one file (missing ones are empty)."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path} (pass --config_path config/<name>.yaml)")
    try:
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f)]
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise ConfigError(f"{path} is not valid YAML: {first}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a UTF-8 text file: pass a YAML config") from None
    if len(docs) > len(DOCUMENTS):
        raise ConfigError(f"{path} has {len(docs)} YAML documents; at most {len(DOCUMENTS)}: "
                          "values, help strings, choices, ranges")
    docs = [d or {} for d in docs] + [{}] * (len(DOCUMENTS) - len(docs))
    for name, d in zip(DOCUMENTS, docs):
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: the {name} document must be a mapping of key: value")
    return docs


def closest_keys(key, known, limit=3):
    """The known keys most like ``key`` (typos and sub-strings), for "did you mean" hints."""
    close = difflib.get_close_matches(key, list(known), n=limit, cutoff=0.6)
    close += [k for k in sorted(known) if (key in k or k in key) and k not in close]
    return close[:limit]


def _did_you_mean(key, known, prefix=""):
    close = closest_keys(key, known)
    return f" (did you mean {', '.join(prefix + c for c in close)}?)" if close else ""


def load_layers(path, _seen=None):
    """Load ``path`` with its ``__base__`` chain (and the defaults), merged.

    Returns {"values", "helps", "choices", "ranges"}: dicts keyed by config key. Refuses keys that
    no file of the chain declares, and help strings, choices or ranges of unknown keys.
    """
    path = os.path.abspath(path)
    seen = _seen or []
    if path in seen:
        raise ConfigError(f"config inheritance loop: {' -> '.join(seen + [path])}")
    values, helps, choices, ranges = _read_yaml_docs(path)
    base = values.pop(BASE_KEY, None)
    if base is not None:
        inherited = load_layers(os.path.join(os.path.dirname(path), str(base)), seen + [path])
    elif path != os.path.abspath(DEFAULTS_FILE) and os.path.isfile(DEFAULTS_FILE):
        inherited = load_layers(DEFAULTS_FILE, seen + [path])
    else:
        inherited = {name: {} for name in DOCUMENTS}
    known = inherited["values"]
    for key in values:
        if key in known:  # the declared type holds: an int in a file for a float key is a float
            values[key] = _check_type(key, values[key], known[key], path)
        elif not helps.get(key):
            raise ConfigError(
                f"{path}: unknown key '{key}'{_did_you_mean(key, known)}: a config may set only keys "
                "that default.yaml or its __base__ chain declares (a new key needs a help string in "
                "the file's second YAML document)")
    for name, doc in (("help string", helps), ("choices", choices), ("range", ranges)):
        for key in doc:
            if key not in values and key not in known:
                raise ConfigError(f"{path}: {name} for '{key}', which no config sets"
                                  f"{_did_you_mean(key, known)}")
    for key, spec in ranges.items():
        _parse_range(spec, f"{path}: range of '{key}'")
    own = dict(zip(DOCUMENTS, (values, helps, choices, ranges)))
    return {name: {**inherited[name], **own[name]} for name in DOCUMENTS}


def load_yaml(path):
    """Load ``path`` with its ``__base__`` chain (and the defaults). Returns (values, helps, choices)."""
    layers = load_layers(path)
    return layers["values"], layers["helps"], layers["choices"]


# --------------------------------------------------------------------------- ranges
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf"
_COMPARE = re.compile(rf"^(>=|<=|>|<)\s*({_NUMBER})$")
_INTERVAL = re.compile(rf"^([\[(])\s*({_NUMBER})\s*,\s*({_NUMBER})\s*([\])])$")
_MULTIPLE = re.compile(r"^multiple of\s+(\w+)$")


def _parse_range(spec, where):
    """Clauses of a range string as callables ``(value, values) -> bool`` (one-line error when
    the string does not follow the grammar of the module docstring)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"{where}: a range must be a string such as \"> 0\" or \"(0, 1]\"")
    clauses = []
    for text in (t.strip() for t in spec.split(" and ")):
        m = _COMPARE.match(text)
        if m:
            op, bound = m.group(1), float(m.group(2))
            clauses.append({">": lambda v, _, b=bound: v > b, ">=": lambda v, _, b=bound: v >= b,
                            "<": lambda v, _, b=bound: v < b, "<=": lambda v, _, b=bound: v <= b}[op])
            continue
        m = _INTERVAL.match(text)
        if m:
            lo, hi = float(m.group(2)), float(m.group(3))
            lo_in, hi_in = m.group(1) == "[", m.group(4) == "]"
            clauses.append(lambda v, _, lo=lo, hi=hi, a=lo_in, b=hi_in:
                           (v >= lo if a else v > lo) and (v <= hi if b else v < hi))
            continue
        if text == "odd":
            clauses.append(lambda v, _: float(v).is_integer() and int(v) % 2 == 1)
            continue
        m = _MULTIPLE.match(text)
        if m:
            ref = m.group(1)
            clauses.append(lambda v, values, ref=ref: _is_multiple(v, values.get(ref, ref)))
            continue
        raise ConfigError(f"{where}: cannot read the range clause '{text}' (use > x, >= x, < x, "
                          "<= x, (a, b], odd, multiple of N, joined by 'and')")
    return clauses


def _is_multiple(value, of):
    try:
        of = float(of)
    except (TypeError, ValueError):
        return True  # the other key is absent or not a number: its own checks report it
    return of != 0 and float(value / of).is_integer()


def check_ranges(values, ranges):
    """Raise ConfigError for the first value outside its range (lists: each item)."""
    for key, spec in ranges.items():
        if key not in values or values[key] is None:
            continue
        value = values[key]
        items = value if isinstance(value, (list, tuple)) else [value]
        clauses = _parse_range(spec, f"range of '{key}'")
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            if not math.isfinite(item) or not all(clause(item, values) for clause in clauses):
                refs = [m.group(1) for m in (_MULTIPLE.match(t.strip()) for t in spec.split(" and "))
                        if m and m.group(1) in values]
                refs_text = "".join(f", {r} = {values[r]!r}" for r in refs)
                each = "each item of " if isinstance(value, (list, tuple)) else ""
                raise ConfigError(f"{each}'{key}' must be {spec}{refs_text}, got {value!r}: "
                                  f"fix it in the YAML or pass --{key}")


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


def _format_help(path, values, helps, choices, ranges):
    lines = [f"usage: python {os.path.basename(sys.argv[0])} --config_path FILE [--key value ...]",
             f"config file: {path}", "", "options (default from the config file):"]
    for key in sorted(values):
        extra = f" choices: {choices[key]}." if key in choices else ""
        extra += f" (range: {ranges[key]})" if key in ranges else ""
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
    layers = load_layers(path)
    values, helps, choices = layers["values"], layers["helps"], layers["choices"]
    for key, value in (script_defaults or {}).items():
        values[key] = _check_type(key, value, values[key], "script default") if key in values else value
    helps = {**helps, **(script_helps or {})}
    if want_help:
        print(_format_help(path, values, helps, choices, layers["ranges"]))
        sys.exit(0)
    for key, raw in overrides.items():
        if key not in values:
            hint = _did_you_mean(key, values, prefix="--")
            raise ConfigError(f"unknown option --{key}: not a key of {os.path.basename(path)}{hint}")
        value = _parse_cli_value(raw, values[key])
        values[key] = _check_type(key, value, values[key], "command line")
    for key, allowed in choices.items():
        if key in values and values[key] not in allowed:
            raise ConfigError(f"'{key}' must be one of {allowed}, got {values[key]!r}")
    check_ranges(values, layers["ranges"])
    return Config(values, config_path=os.path.abspath(path))


def save_config(cfg, directory, name="config.yaml"):
    """Write the resolved config next to the checkpoints; returns the file path.

    The file carries the help strings, choices and ranges of its keys as its other documents, so
    it is itself a valid ``--config_path`` (evaluate or resume with a run's exact settings)."""
    from src.model_utils.errors import atomic_write_text
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    plain = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
    source = cfg.get("config_path")
    layers = load_layers(source) if source and os.path.isfile(source) else \
        {n: {} for n in DOCUMENTS}
    helps = {k: layers["helps"].get(k) or "set by the entry script" for k in plain}
    helps["config_path"] = "the config file this run was started with"
    docs = [plain, helps] + [{k: v for k, v in layers[n].items() if k in plain}
                             for n in ("choices", "ranges")]
    text = "---\n".join(yaml.safe_dump(d, sort_keys=True, allow_unicode=True) for d in docs)
    atomic_write_text(path, text)
    return path


def load_saved_config(path):
    """Read a config written by :func:`save_config` (e.g. to evaluate with a run's settings)."""
    return Config(_read_yaml_docs(path)[0])
