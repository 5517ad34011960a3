#!/bin/bash
# Build ascend310_infer/out/main against an installed MindSpore that ships the
# C++ inference library (Ascend MindSpore or MindSpore Lite packages).
#
# Usage: bash build.sh        (works from any directory)
#   Env: MINDSPORE_PATH  MindSpore dir with include/api/ and lib/libmindspore.so
#                        (default: directory of the importable mindspore package)
#        PYTHON          interpreter used to locate mindspore (default python3)
#        CXX11_ABI       optional _GLIBCXX_USE_CXX11_ABI value (0 or 1)
#        BUILD_DIR / OUTPUT_DIR  default ascend310_infer/build and ascend310_infer/out
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
        # (no grep -q: its early exit would SIGPIPE nm and trip pipefail)
        nm -DC --defined-only "${MS_LIB}" 2>/dev/null | grep -F 'mindspore::Model::Predict(' >/dev/null || return 1
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

BUILD_DIR="${BUILD_DIR:-${SCRIPT_DIR}/build}"
OUTPUT_DIR="${OUTPUT_DIR:-${SCRIPT_DIR}/out}"
mkdir -p "${BUILD_DIR}" "${OUTPUT_DIR}"
BUILD_DIR="$(cd "${BUILD_DIR}" && pwd)"
OUTPUT_DIR="$(cd "${OUTPUT_DIR}" && pwd)"
cd "${BUILD_DIR}"
cmake "${SCRIPT_DIR}" -DMINDSPORE_PATH="${MINDSPORE_PATH}" -DOUTPUT_DIR="${OUTPUT_DIR}" -DCXX11_ABI="${CXX11_ABI:-}"
make -j"$(nproc 2>/dev/null || echo 4)"
echo "built ${OUTPUT_DIR}/main"
