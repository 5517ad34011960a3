"""Run several commands of the repository (entry scripts, ``python -m`` tools) in ONE child process.

A test that runs train.py, then eval.py, then export.py would pay MindSpore's import and set-up
once per subprocess; here they run one after the other in a single fresh interpreter, each as
``python script.py args`` / ``python -m module args`` would (``runpy``, ``sys.argv``, ``__main__``),
each with its own exit code and with file descriptors 1 and 2 captured, so what MindSpore's C++
code writes counts as it would in a terminal. The child is separate from pytest: nothing leaks
into the test process.

    results = run_commands(["train.py", "--config_path", ...], ["eval.py", ...], ["-m", "src.infer", ...])
    code, stdout, stderr = results[0]
"""
import json
import os
import subprocess
import sys
import tempfile

from conftest import ROOT

CHILD = r'''
import json, os, runpy, sys, tempfile, traceback
commands, root, report_file = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
sys.path.insert(0, root)
results = []
for argv in commands:
    module = argv[1] if argv[0] == "-m" else None
    args = argv[2:] if module else argv[1:]
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.argv = [module or argv[0]] + list(args)
        code = 0
        try:
            if module:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(os.path.join(root, argv[0]), run_name="__main__")
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:  # sys.exit("message"): printed, exit code 1
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:  # an uncaught exception: its traceback, exit code 1
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        texts = []
        for f in (out, err):
            f.seek(0)
            texts.append(f.read().decode("utf-8", "replace"))
    results.append([code] + texts)
with open(report_file, "w", encoding="utf-8") as f:
    json.dump(results, f)
'''


def run_commands(*commands, cwd=ROOT, env=None, timeout=900):
    """``[(exit code, stdout, stderr)]`` of ``commands`` (argv lists: ``["train.py", ...]`` or
    ``["-m", "src.infer", ...]``), run in order in one child process started in ``cwd``."""
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "results.json")
        proc = subprocess.run([sys.executable, "-c", CHILD,
                               json.dumps([list(map(str, c)) for c in commands]), ROOT, report],
                              cwd=str(cwd), capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, **(env or {})))
        assert proc.returncode == 0 and os.path.isfile(report), \
            f"the command runner died ({proc.returncode}): {proc.stdout[-1000:]}{proc.stderr[-3000:]}"
        with open(report, encoding="utf-8") as f:
            return [tuple(r) for r in json.load(f)]
