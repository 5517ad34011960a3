#!/bin/bash
# Type-check the inference sources against the real MindSpore C++ API headers
# (g++ -fsyntax-only, warnings as errors). Nothing is linked, so no
# libmindspore.so or Ascend toolkit is needed.
#
# Usage: bash check_syntax.sh [HEADERS_DIR] [SOURCE.cc ...]
#   HEADERS_DIR: directory containing include/api/model.h
#                (default: ascend310_infer/third_party/mindspore_headers,
#                 filled by fetch_headers.sh).
#   SOURCE.cc:   files to check (default: ascend310_infer/src/*.cc).
#   Env: CXX (default g++), GFLAGS_INCLUDE (extra dir holding gflags/gflags.h).
set -uo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HEADERS="${1:-${SCRIPT_DIR}/third_party/mindspore_headers}"
shift $(( $# > 0 ? 1 : 0 ))
CXX="${CXX:-g++}"

if [ ! -f "${HEADERS}/include/api/model.h" ]; then
    echo "error: MindSpore C++ API headers not found at ${HEADERS} (no include/api/model.h); run ascend310_infer/fetch_headers.sh" >&2
    exit 2
fi
if ! command -v "${CXX}" >/dev/null 2>&1; then
    echo "error: C++ compiler '${CXX}' not found" >&2
    exit 2
fi

# The API headers include "include/api/..." (root: HEADERS) and
# "mindapi/base/format.h" (root: HEADERS/include); the sources include
# "inc/utils.h" (root: SCRIPT_DIR).
FLAGS=(-std=c++17 -fsyntax-only -Wall -Werror -I"${SCRIPT_DIR}" -I"${HEADERS}" -I"${HEADERS}/include")
if [ -n "${GFLAGS_INCLUDE:-}" ]; then
    FLAGS+=(-I"${GFLAGS_INCLUDE}")
fi

if ! echo '#include <gflags/gflags.h>' | "${CXX}" "${FLAGS[@]}" -x c++ - >/dev/null 2>&1; then
    echo "error: gflags headers (gflags/gflags.h) not found; install them (apt-get install -y libgflags-dev) or set GFLAGS_INCLUDE" >&2
    exit 2
fi

if [ $# -gt 0 ]; then
    SOURCES=("$@")
else
    SOURCES=("${SCRIPT_DIR}"/src/*.cc)
fi

status=0
for src in "${SOURCES[@]}"; do
    if "${CXX}" "${FLAGS[@]}" "${src}"; then
        echo "OK   ${src}"
    else
        echo "FAIL ${src}" >&2
        status=1
    fi
done
exit "${status}"
