"""Checks for the Ascend 310 C++ inference program in ascend310_infer/.

No Ascend hardware or C++ MindSpore library is needed:
* the scripts' shell syntax and build.sh's error path are always checked;
* src/utils.cc is compiled and run with a small driver when g++ is present;
* src/*.cc are type-checked against the real MindSpore C++ API headers
  (fetched by ascend310_infer/fetch_headers.sh) when those and gflags exist;
* with those headers, build.sh builds out/main against a stand-in
  libmindspore.so (ascend310_infer/tests/fake_mindspore.cc) and the binary is
  run end to end on classifier- and ConvLSTM-shaped inputs.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
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


@pytest.fixture(scope="module")
def fake_main(tmp_path_factory):
    """out/main built by build.sh against the fake libmindspore.so."""
    _require_syntax_check_inputs()
    for tool in ("cmake", "make"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found")
    root = tmp_path_factory.mktemp("fake_build")
    ms_path = root / "mindspore"
    (ms_path / "lib").mkdir(parents=True)
    (ms_path / "include").symlink_to(HEADERS_DIR / "include")
    lib = _run([CXX, "-std=c++17", "-shared", "-fPIC", "-O2", "-Wall", "-Werror",
                f"-I{HEADERS_DIR}", f"-I{HEADERS_DIR / 'include'}",
                str(INFER_DIR / "tests" / "fake_mindspore.cc"), "-o", str(ms_path / "lib" / "libmindspore.so")])
    assert lib.returncode == 0, lib.stderr
    env = dict(os.environ, MINDSPORE_PATH=str(ms_path), BUILD_DIR=str(root / "build"), OUTPUT_DIR=str(root / "out"))
    build = _run(["bash", str(INFER_DIR / "build.sh")], env=env, cwd=root)
    assert build.returncode == 0, build.stdout + build.stderr
    exe = root / "out" / "main"
    assert exe.is_file()
    return exe


@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (1, 4, 1, 8, 8)], ids=["classifier", "convlstm"])
def test_main_end_to_end_with_fake_mindspore(fake_main, tmp_path, shape):
    mindir = tmp_path / "net.mindir"
    mindir.write_text("FAKE_MINDIR " + " ".join(map(str, shape)))
    in_dir = tmp_path / "input"
    in_dir.mkdir()
    rng = np.random.default_rng(0)
    samples = {f"sample_{i:02d}": rng.standard_normal(shape).astype(np.float32) for i in (2, 0, 1)}
    for stem, arr in samples.items():
        arr.tofile(in_dir / f"{stem}.bin")
    (in_dir / "readme.txt").write_text("ignored")

    result = _run([str(fake_main), f"--mindir_path={mindir}", f"--input0_path={in_dir}", "--device_id=0"],
                  cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.index("sample_00") < result.stdout.index("sample_01") < result.stdout.index("sample_02")
    out_dir = tmp_path / "result_Files"
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        f"{stem}_{k}.bin" for stem in samples for k in (0, 1))
    for stem, arr in samples.items():
        np.testing.assert_array_equal(np.fromfile(out_dir / f"{stem}_0.bin", np.float32), arr.ravel())
        np.testing.assert_allclose(np.fromfile(out_dir / f"{stem}_1.bin", np.float32), [arr.sum()], rtol=1e-4)
    timing = (tmp_path / "time_Result" / "test_perform_static.txt").read_text()
    assert timing.startswith("NN inference cost average time: ") and timing.strip().endswith("ms of infer_count 3")


def test_main_reports_errors_with_fake_mindspore(fake_main, tmp_path):
    mindir = tmp_path / "net.mindir"
    mindir.write_text("FAKE_MINDIR 1 3 8 8")
    in_dir = tmp_path / "input"
    in_dir.mkdir()
    np.zeros((1, 3, 8, 9), np.float32).tofile(in_dir / "wrong.bin")

    def run(*flags):
        return _run([str(fake_main), *flags], cwd=tmp_path)

    not_mindir = tmp_path / "junk.mindir"
    not_mindir.write_text("junk")
    bad_model = run(f"--mindir_path={not_mindir}", f"--input0_path={in_dir}")
    assert bad_model.returncode != 0 and "failed to load MindIR" in bad_model.stderr
    assert not (tmp_path / "result_Files").exists()  # nothing written before the model loads

    bad_size = run(f"--mindir_path={mindir}", f"--input0_path={in_dir}")
    assert bad_size.returncode != 0
    assert "wrong.bin has 864 bytes" in bad_size.stderr and "needs 768" in bad_size.stderr

    missing_dir = run(f"--mindir_path={mindir}", f"--input0_path={tmp_path / 'nope'}")
    assert missing_dir.returncode != 0 and "input directory not found" in missing_dir.stderr
