"""Checks for the Ascend 310 C++ inference program in ascend310_infer/.

No Ascend hardware or C++ MindSpore library is needed:
* the scripts' shell syntax and build.sh's error path are always checked;
* src/utils.cc is compiled and run with a small driver when g++ is present;
* src/*.cc are type-checked against the real MindSpore C++ API headers
  (fetched by ascend310_infer/fetch_headers.sh) when those and gflags exist.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INFER_DIR = ROOT / "ascend310_infer"
HEADERS_DIR = Path(os.environ.get("MS_HEADERS_DIR", INFER_DIR / "third_party" / "mindspore_headers"))
SCRIPTS = ["build.sh", "fetch_headers.sh", "check_syntax.sh"]
CXX = os.environ.get("CXX", "g++")


def _run(cmd, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)


def _have_cxx():
    return shutil.which(CXX) is not None


def _have_gflags_headers():
    if not _have_cxx():
        return False
    probe = _run([CXX, "-x", "c++", "-fsyntax-only", "-"], input="#include <gflags/gflags.h>\n")
    return probe.returncode == 0


def _require_syntax_check_inputs():
    if not (HEADERS_DIR / "include" / "api" / "model.h").is_file():
        pytest.skip(f"MindSpore C++ API headers not found at {HEADERS_DIR}; run ascend310_infer/fetch_headers.sh")
    if not _have_cxx():
        pytest.skip(f"C++ compiler {CXX!r} not found")
    if not _have_gflags_headers():
        pytest.skip("gflags headers not found; apt-get install -y libgflags-dev")


def _check_syntax(*sources):
    return _run(["bash", str(INFER_DIR / "check_syntax.sh"), str(HEADERS_DIR), *map(str, sources)])


def test_layout():
    for rel in ["CMakeLists.txt", "inc/utils.h", "src/main.cc", "src/utils.cc", *SCRIPTS]:
        assert (INFER_DIR / rel).is_file(), rel


@pytest.mark.parametrize("script", SCRIPTS)
def test_shell_syntax(script):
    result = _run(["bash", "-n", str(INFER_DIR / script)])
    assert result.returncode == 0, result.stderr


def _assert_build_error(result, fragment):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and fragment in lines[0], result.stderr


def test_build_sh_rejects_missing_cpp_library(tmp_path):
    # A MindSpore install without lib/libmindspore.so (like the CPU wheel).
    env = dict(os.environ, MINDSPORE_PATH=str(tmp_path))
    result = _run(["bash", str(INFER_DIR / "build.sh")], env=env, cwd=tmp_path)
    _assert_build_error(result, "not the CPU PyPI wheel")
    assert not (tmp_path / "build").exists()


def test_build_sh_finds_mindspore_via_python(tmp_path):
    # A fake importable `mindspore` package that has no C++ library: build.sh
    # must locate it through python and then refuse to build.
    (tmp_path / "mindspore").mkdir()
    (tmp_path / "mindspore" / "__init__.py").write_text("")
    env = {k: v for k, v in os.environ.items() if k != "MINDSPORE_PATH"}
    env.update(PYTHON=sys.executable, PYTHONPATH=str(tmp_path))
    result = _run(["bash", str(INFER_DIR / "build.sh")], env=env, cwd=tmp_path)
    _assert_build_error(result, "not the CPU PyPI wheel")
    assert str(tmp_path / "mindspore" / "lib" / "libmindspore.so") in result.stderr


def test_build_sh_reports_unimportable_mindspore(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MINDSPORE_PATH"}
    env["PYTHON"] = shutil.which("false") or "/bin/false"
    result = _run(["bash", str(INFER_DIR / "build.sh")], env=env, cwd=tmp_path)
    _assert_build_error(result, "cannot import mindspore")


def test_check_syntax_reports_missing_headers(tmp_path):
    result = _run(["bash", str(INFER_DIR / "check_syntax.sh"), str(tmp_path)])
    assert result.returncode != 0
    assert "fetch_headers.sh" in result.stderr


UTILS_DRIVER = r"""
#include <cassert>
#include <cstdio>
#include <string>
#include <vector>
#include "inc/utils.h"
using namespace infer_utils;
int main(int argc, char **argv) {
  const std::string root = argv[1];
  const std::string in = root + "/in";
  assert(MakeDirs(in + "/nested/deeper") && IsDirectory(in + "/nested/deeper"));
  assert(MakeDirs(in));  // existing dir is fine
  const char bytes[] = {1, 2, 3, 0, 5};
  assert(WriteFile(in + "/b_002.bin", bytes, sizeof(bytes)));
  assert(WriteFile(in + "/a_001.bin", bytes, 2));
  assert(WriteFile(in + "/notes.txt", bytes, 1));
  assert(MakeDirs(in + "/dir.bin"));  // a directory, not a file
  const std::vector<std::string> files = ListBinFiles(in);
  assert(files.size() == 2);
  assert(files[0] == in + "/a_001.bin" && files[1] == in + "/b_002.bin");
  assert(FileStem(files[1]) == "b_002");
  std::vector<char> data;
  assert(ReadFile(files[1], &data) && data.size() == sizeof(bytes) && data[4] == 5);
  assert(!ReadFile(in + "/missing.bin", &data) && data.empty());
  assert(RealPath(in + "/missing").empty() && !RealPath(in + "/../in").empty());
  assert(ListBinFiles(in + "/missing").empty());
  std::puts("utils ok");
  return 0;
}
"""


def test_utils_helpers(tmp_path):
    if not _have_cxx():
        pytest.skip(f"C++ compiler {CXX!r} not found")
    driver = tmp_path / "driver.cc"
    driver.write_text(UTILS_DRIVER)
    exe = tmp_path / "driver"
    build = _run([CXX, "-std=c++17", "-Wall", "-Werror", "-UNDEBUG", f"-I{INFER_DIR}",
                  str(driver), str(INFER_DIR / "src" / "utils.cc"), "-o", str(exe)])
    assert build.returncode == 0, build.stderr
    result = _run([str(exe), str(tmp_path)])
    assert result.returncode == 0 and "utils ok" in result.stdout, result.stdout + result.stderr


def test_sources_type_check_against_mindspore_headers():
    _require_syntax_check_inputs()
    result = _check_syntax()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout and "main.cc" in result.stdout


def test_type_check_catches_wrong_api_call(tmp_path):
    _require_syntax_check_inputs()
    src = tmp_path / "main.cc"
    shutil.copy(INFER_DIR / "src" / "main.cc", src)
    # Control: the unmodified copy passes, so a failure below is the bad call.
    assert _check_syntax(src).returncode == 0
    with src.open("a") as f:
        # Predict() takes std::vector<MSTensor>, not raw floats.
        f.write("\nmindspore::Status BadCall(mindspore::Model *m) {\n"
                "  return m->Predict(std::vector<float>{1.0f}, nullptr);\n}\n")
    result = _check_syntax(src)
    assert result.returncode != 0
    assert "Predict" in result.stderr
