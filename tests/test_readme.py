"""Keep the READMEs honest: every script, config and flag they name exists and is accepted, every
config key is documented, no placeholder is left, and the test command is the one CI runs."""
import collections
import glob
import importlib
import os
import re
import shlex
import unicodedata

import pytest

from conftest import ROOT
from src.model_utils.config import ConfigError, get_config, load_yaml

READMES = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "README_CN.md")]
ENTRY_SCRIPTS = {"train.py": {}, "eval.py": {}, "export.py": {},
                 "preprocess.py": None, "postprocess.py": None}


def text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def code_lines(path):
    """Command lines of the README's code blocks, with backslash continuations joined."""
    blocks = re.findall(r"```(?:bash|text|yaml)?\n(.*?)```", text(path), flags=re.S)
    lines = []
    for block in blocks:
        lines += block.replace("\\\n", " ").splitlines()
    return [l.split("#")[0].strip() for l in lines]


def all_config_keys():
    keys = set()
    for path in glob.glob(os.path.join(ROOT, "config", "*.yaml")):
        keys |= set(load_yaml(path)[0])
    return keys


def script_keys(module):
    mod = importlib.import_module(module)
    return set(getattr(mod, "SCRIPT_DEFAULTS", {}))


@pytest.mark.parametrize("readme", READMES)
def test_named_files_exist(readme):
    content = text(readme)
    named = set(re.findall(r"(?:scripts|config|ascend310_infer|src|tests)/[\w./-]+\.(?:sh|yaml|py|cc|h|txt)", content))
    named |= set(re.findall(r"\b(\w+\.py)\b", content)) & set(ENTRY_SCRIPTS)
    assert len(named) > 20
    missing = sorted(n for n in named if not os.path.exists(os.path.join(ROOT, n))
                     and not os.path.exists(os.path.join(ROOT, "ascend310_infer", n)))  # its tree
    assert not missing, missing


def argparse_flags(path):
    """The ``--flags`` a script declares with ``add_argument("--flag", "--alias", ...)``."""
    with open(path, encoding="utf-8") as f:
        calls = re.findall(r'add_argument\(\s*((?:"--?[\w-]+",\s*)+)', f.read())
    return {flag for call in calls for flag in re.findall(r'"--([a-z][a-z0-9_]*)"', call)}


def tool_files(content):
    """The source files of the ``python -m src.…`` tools and ``python benchmarks/*.py`` scripts a
    README names."""
    files = set()
    for module in set(re.findall(r"python -m (src(?:\.\w+)+)", content)):
        base = os.path.join(ROOT, *module.split("."))
        files.add(base + ".py" if os.path.isfile(base + ".py") else os.path.join(base, "__main__.py"))
    files |= {os.path.join(ROOT, p) for p in re.findall(r"python (benchmarks/\w+\.py)", content)}
    return files


@pytest.mark.parametrize("readme", READMES)
def test_every_flag_is_accepted(readme):
    known = all_config_keys() | {"config_path", "help"}
    known |= script_keys("preprocess") | script_keys("postprocess")
    tools = tool_files(text(readme))
    assert len(tools) >= 6 and all(os.path.isfile(f) for f in tools), sorted(tools)
    for tool in tools:  # python -m src.infer, src.kernels, ..., benchmarks/benchmark.py
        known |= argparse_flags(tool)
    # the test command's flags are pytest's (that command is checked against .ci/run below)
    content = re.sub(r"python -m pytest[^\n`]*", "", text(readme))
    flags = set(re.findall(r"(?<![\w-])--([a-z][a-z0-9_]*)", content))
    flags -= {"key", "bogus"}  # the README's syntax example (--key value) and its error example
    assert len(flags) > 10
    assert not sorted(flags - known)


@pytest.mark.parametrize("readme", READMES)
def test_python_commands_parse(readme):
    """Each `python train.py|eval.py|export.py ...` line of the README passes the config parser."""
    checked = 0
    for line in code_lines(readme):
        match = re.match(r"python (train|eval|export)\.py (.*)", line)
        if not match:
            continue
        args = re.sub(r"\[[^\]]*\]", "", match.group(2))  # optional parts
        argv = shlex.split(args)
        try:
            cfg = get_config(argv, default_config=os.path.join(ROOT, "config", "cifar10_config_cpu.yaml"))
        except ConfigError as exc:
            pytest.fail(f"README command does not parse: {line}\n{exc}")
        assert os.path.isfile(cfg.config_path)
        checked += 1
    assert checked >= 6


@pytest.mark.parametrize("readme", READMES)
def test_bash_commands_name_real_scripts_with_enough_arguments(readme):
    checked = 0
    for line in code_lines(readme):
        match = re.search(r"bash (scripts/\w+\.sh)(.*)", line)
        if not match:
            continue
        script = os.path.join(ROOT, match.group(1))
        assert os.path.isfile(script), line
        usage = re.search(r"[Uu]sage:.*?" + re.escape(os.path.basename(script)) + r"(.*)", text(script))
        if usage:
            required = [a for a in usage.group(1).split() if not a.startswith("[") and a.isupper()]
            given = [a for a in shlex.split(re.sub(r"\[[^\]]*\]", "", match.group(2))) if not a.startswith("--")]
            assert len(given) >= len(required), f"{line}: needs {required}"
        checked += 1
    assert checked >= 8


@pytest.mark.parametrize("readme", READMES)
def test_every_config_key_is_documented_and_no_placeholder_is_left(readme):
    content = text(readme)
    undocumented = sorted(k for k in all_config_keys() if f"`{k}`" not in content)
    assert not undocumented
    assert not re.search(r"^[A-Z_]{8,}$", content, flags=re.M), "unfilled placeholder"


def test_readme_names_the_ci_test_command():
    ci = text(os.path.join(ROOT, ".ci", "run"))
    command = re.findall(r"^python -m pytest.*$", ci, flags=re.M)[-1]
    assert command in text(READMES[0]) and command in text(READMES[1])
    assert "requirements-test.txt" in ci


# ---------------------------------------------------------------- README.md and README_CN.md agree

README_MAX_LINES = 610  # "at most about 600"


def without_code(content):
    """The text with every fenced code block blanked (its lines kept, so line counts hold)."""
    return re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), content, flags=re.S)


def github_anchor(title):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    kept = "".join(c for c in title.lower()
                   if c in " -_" or unicodedata.category(c)[0] in "LMN")
    return kept.replace(" ", "-")


def manual_outline(content):
    """What both READMEs must share: the heading levels in order, the table rows under each
    heading, the heading each internal link points to, the external links and images, and the
    numbers in the tables (as a multiset)."""
    prose = without_code(content)
    headings, rows, anchors = [], [0], {}
    for line in prose.splitlines():
        match = re.match(r"(#{1,6}) +(.+?) *$", line)
        if match:
            anchor = github_anchor(match.group(2))
            anchors.setdefault(anchor, len(headings))  # the first heading of a name owns it
            headings.append(len(match.group(1)))
            rows.append(0)
        elif line.startswith("|"):
            rows[-1] += 1
    internal, external = [], collections.Counter()
    for image, target in re.findall(r"(!?)\[[^\]]*\]\(([^)\s]+)\)", prose):
        if target.startswith("#"):
            internal.append(anchors.get(target[1:], f"unknown anchor {target}"))
        elif os.path.basename(target) in ("README.md", "README_CN.md"):
            external[image + "<the other language>"] += 1
        else:
            external[image + target] += 1
    table_text = "\n".join(l for l in prose.splitlines() if l.startswith("|"))
    numbers = collections.Counter(re.findall(r"\d+(?:[.,]\d+)*", table_text))
    return {"heading levels": headings, "table rows per section": rows, "internal links": internal,
            "external links and images": external, "numbers in tables": numbers}


def outline_differences(english, chinese):
    """One line per way the two READMEs' outlines differ (empty: they say the same)."""
    en, cn = manual_outline(english), manual_outline(chinese)
    problems = [f"{what}: unresolved in {name}" for name, outline in (("README.md", en), ("README_CN.md", cn))
                for what in outline["internal links"] if isinstance(what, str)]
    for key in en:
        if en[key] != cn[key]:
            if isinstance(en[key], collections.Counter):
                detail = f"only in README.md {dict(en[key] - cn[key])}, only in README_CN.md {dict(cn[key] - en[key])}"
            else:
                detail = f"README.md {en[key]} vs README_CN.md {cn[key]}"
            problems.append(f"{key} differ: {detail}")
    return problems


def test_both_readmes_have_the_same_sections_links_and_figures():
    assert not outline_differences(text(READMES[0]), text(READMES[1]))


def test_readme_stays_a_manual_of_about_600_lines():
    for readme in READMES:
        assert len(text(readme).splitlines()) <= README_MAX_LINES, readme


def test_the_outline_check_catches_a_broken_translation(tmp_path):
    """Each way a translation can drift makes the comparison fail (a check that cannot fail
    proves nothing): broken copies of README_CN.md are written to tmp_path and compared."""
    english, chinese = text(READMES[0]), text(READMES[1])
    table_line = next(l for l in chinese.splitlines() if l.startswith("|") and re.search(r"\d\.\d", l))
    changed_figure = re.sub(r"(\d)\.(\d)", r"\1.9\2", table_line, count=1)
    image = re.search(r"!\[[^\]]*\]\(([^)]+)\)", chinese).group(1)
    anchor = re.search(r"\]\((#[^)]+)\)", chinese).group(1)
    section = next(l for l in chinese.splitlines() if l.startswith("## "))
    broken = {
        "figure": chinese.replace(table_line, changed_figure),
        "heading level": chinese.replace("\n" + section + "\n", "\n#" + section + "\n", 1),
        "dropped section": chinese.replace("\n" + section + "\n", "\n", 1),
        "image": chinese.replace(image, image.replace(".png", "_old.png")),
        "anchor": chinese.replace(f"]({anchor})", "](#nowhere)", 1),
        "table row": chinese.replace(table_line + "\n", "", 1),
    }
    for what, content in broken.items():
        path = tmp_path / f"README_CN_{what.replace(' ', '_')}.md"
        path.write_text(content, encoding="utf-8")
        assert outline_differences(english, path.read_text(encoding="utf-8")), what
    too_long = tmp_path / "README_long.md"
    too_long.write_text(english + "\n" * README_MAX_LINES, encoding="utf-8")
    assert len(too_long.read_text(encoding="utf-8").splitlines()) > README_MAX_LINES
