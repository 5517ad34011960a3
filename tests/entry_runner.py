"""Run commands of the repository (entry scripts, ``python -m`` tools) without a new interpreter each.

A test that runs train.py, then eval.py, then export.py would pay MindSpore's import and set-up
(~2.5 s of CPU) once per subprocess. Here each command runs as ``python script.py args`` /
``python -m module args`` would (``runpy``, ``sys.argv``, ``__main__``), with its own exit code and
with file descriptors 1 and 2 captured, so what MindSpore's C++ code writes counts as it would in
a terminal, but in a child process that is reused: one long-lived runner per test process (each
pytest-xdist worker has its own), started on first use. Between two calls the runner puts back
its working folder, environment and ``sys.path``; MindSpore stays imported (that is the point).
The runner is separate from pytest: nothing leaks into the test process.

    results = run_commands(["train.py", "--config_path", ...], ["eval.py", ...], ["-m", "src.infer", ...])
    code, stdout, stderr = results[0]

A test whose commands need their own environment (``env=``: read at import time) or a process of
their own (``fresh=True``: process-wide state is what the test is about) gets a new child.
"""
import atexit
import json
import os
import select
import subprocess
import sys
import tempfile

from conftest import ROOT

CHILD = r'''
import gc, json, os, runpy, sys, tempfile, traceback


def run(argv, root):
    """One command, as ``python argv...`` would run it: [exit code, stdout, stderr]."""
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
    return [code] + texts


def serve(request, root):
    """The commands of one request, in its folder; the runner's state put back afterwards."""
    cwd, env, path = os.getcwd(), dict(os.environ), list(sys.path)
    os.chdir(request["cwd"])
    try:
        results = [run(argv, root) for argv in request["commands"]]
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        sys.path[:] = path
        gc.collect()
    with open(request["report"], "w", encoding="utf-8") as f:
        json.dump(results, f)


root = sys.argv[1]
sys.path.insert(0, root)
if sys.argv[2] == "serve":  # requests as JSON lines on stdin, "done" on the reply descriptor
    with os.fdopen(int(sys.argv[3]), "w") as reply:
        for line in sys.stdin:
            serve(json.loads(line), root)
            reply.write("done\n")
            reply.flush()
else:  # one request, given on the command line
    serve(json.loads(sys.argv[2]), root)
'''

_RUNNER = {}  # this test process's long-lived runner: "proc", "reply" (read end), "log" (its stderr)
# the runner's environment: this process's at collection (conftest's settings), not what a test
# has monkeypatched when it happens to start the runner
_ENV = dict(os.environ)


def _stop_runner():
    proc = _RUNNER.pop("proc", None)
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()
    if "reply" in _RUNNER:
        os.close(_RUNNER.pop("reply"))
    if "log" in _RUNNER:
        _RUNNER.pop("log").close()


atexit.register(_stop_runner)


def _runner():
    if "proc" in _RUNNER and _RUNNER["proc"].poll() is None:
        return _RUNNER
    _stop_runner()
    read, write = os.pipe()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, ROOT, "serve", str(write)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=log, stderr=log, pass_fds=(write,), text=True,
                            env=_ENV)
    os.close(write)
    _RUNNER.update(proc=proc, reply=read, log=log)
    return _RUNNER


def _runner_output():
    log = _RUNNER.get("log")
    if log is None:
        return ""
    log.seek(0)
    return log.read().decode("utf-8", "replace")[-3000:]


def _ask_runner(request, timeout):
    runner = _runner()
    try:
        runner["proc"].stdin.write(json.dumps(request) + "\n")
        runner["proc"].stdin.flush()
    except BrokenPipeError:
        pass  # it died: reported below
    ready, _, _ = select.select([runner["reply"]], [], [], timeout)
    answer = os.read(runner["reply"], 16) if ready else b""
    if answer != b"done\n":
        what = "timed out" if not ready else f"died ({runner['proc'].poll()})"
        output = _runner_output()
        _stop_runner()
        raise AssertionError(f"the command runner {what}: {output}")


def run_commands(*commands, cwd=ROOT, env=None, fresh=False, timeout=900):
    """``[(exit code, stdout, stderr)]`` of ``commands`` (argv lists: ``["train.py", ...]`` or
    ``["-m", "src.infer", ...]``), run in order in ``cwd`` by this test process's runner, or, with
    ``env`` (variables added to this process's) or ``fresh``, by a child process of their own."""
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "results.json")
        request = {"commands": [list(map(str, c)) for c in commands], "cwd": str(cwd), "report": report}
        if env or fresh:
            proc = subprocess.run([sys.executable, "-c", CHILD, ROOT, json.dumps(request)],
                                  cwd=str(cwd), capture_output=True, text=True, timeout=timeout,
                                  env=dict(os.environ, **(env or {})))
            assert proc.returncode == 0 and os.path.isfile(report), \
                f"the command runner died ({proc.returncode}): {proc.stdout[-1000:]}{proc.stderr[-3000:]}"
        else:
            _ask_runner(request, timeout)
        with open(report, encoding="utf-8") as f:
            return [tuple(r) for r in json.load(f)]
