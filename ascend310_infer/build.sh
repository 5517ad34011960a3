#!/bin/bash
# Build ascend310_infer/out/main against an installed MindSpore that ships the
# C++ inference library (Ascend MindSpore or MindSpore Lite packages).
#
# Usage: bash build.sh        (works from any directory)
#   Env: MINDSPORE_PATH  MindSpore dir with include/api/ and lib/libmindspore.so
#                        (default: directory of the importable mindspore package)
#        PYTHON          interpreter used to locate mindspore (default python3)
#        CXX11_ABI       optional _GLIBCXX_USE_CXX11_ABI value (0 or 1)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"

if [ -z "${MINDSPORE_PATH:-}" ]; then
    if ! MINDSPORE_PATH="$("${PYTHON}" -c "import mindspore, os; print(os.path.dirname(mindspore.__file__))" 2>/dev/null)" \
        || [ -z "${MINDSPORE_PATH}" ]; then
        echo "error: cannot import mindspore with ${PYTHON}; install MindSpore for Ascend or set MINDSPORE_PATH" >&2
        exit 1
    fi
fi

MS_LIB="${MINDSPORE_PATH}/lib/libmindspore.so"
has_model_api() {
    [ -f "${MS_LIB}" ] && [ -f "${MINDSPORE_PATH}/include/api/model.h" ] || return 1
    # Make sure the library really exports mindspore::Model (skip if no nm).
    if command -v nm >/dev/null 2>&1; then
        nm -DC --defined-only "${MS_LIB}" 2>/dev/null | grep -q 'mindspore::Model::Predict(' || return 1
    fi
}
if ! has_model_api; then
    echo "error: ${MS_LIB} with the C++ mindspore::Model API (and include/api/model.h) not found; the C++ inference library is part of the Ascend/MindSpore Lite packages, not the CPU PyPI wheel" >&2
    exit 1
fi

for tool in cmake make; do
    if ! command -v "${tool}" >/dev/null 2>&1; then
        echo "error: ${tool} not found" >&2
        exit 1
    fi
done

mkdir -p "${SCRIPT_DIR}/build" "${SCRIPT_DIR}/out"
cd "${SCRIPT_DIR}/build"
cmake .. -DMINDSPORE_PATH="${MINDSPORE_PATH}" -DCXX11_ABI="${CXX11_ABI:-}"
make -j"$(nproc 2>/dev/null || echo 4)"
echo "built ${SCRIPT_DIR}/out/main"
