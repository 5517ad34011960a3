#!/bin/bash
# Fetch the MindSpore C++ API headers (include/api/*.h) for the syntax check.
#
# Only the headers are extracted: the mindspore 2.7.x PyPI wheel ships
# mindspore/include/ (later wheels such as 2.10 do not), but it does not
# ship the Ascend C++ inference library, so this is for type-checking only.
#
# Usage: bash fetch_headers.sh [DEST]
#   DEST defaults to ascend310_infer/third_party/mindspore_headers.
#   Env: MS_HEADER_VERSION (default 2.7.1), PYTHON (default python3).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEST="${1:-${SCRIPT_DIR}/third_party/mindspore_headers}"
VERSION="${MS_HEADER_VERSION:-2.7.1}"
PYTHON="${PYTHON:-python3}"

if [ -f "${DEST}/include/api/model.h" ]; then
    echo "MindSpore headers already present in ${DEST}"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "${TMP}"' EXIT

# The wheel is platform-specific; pin one that exists on PyPI so this works
# regardless of the local interpreter (only its headers are used).
echo "Downloading mindspore==${VERSION} wheel (no dependencies) ..."
"${PYTHON}" -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux1_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --python-version 3.11 \
    --implementation cp --abi cp311 \
    -d "${TMP}" "mindspore==${VERSION}"

WHEEL="$(ls "${TMP}"/mindspore-*.whl 2>/dev/null | head -n 1)"
if [ -z "${WHEEL}" ]; then
    echo "error: could not download the mindspore==${VERSION} wheel" >&2
    exit 1
fi

# Extract only mindspore/include/* (stripping the leading "mindspore/") into a
# scratch dir first, so an interrupted run never leaves a half-filled DEST.
"${PYTHON}" - "${WHEEL}" "${TMP}/headers" <<'PY'
import os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
count = 0
with zipfile.ZipFile(wheel) as zf:
    for info in zf.infolist():
        name = info.filename
        if not name.startswith("mindspore/include/") or name.endswith("/"):
            continue
        target = os.path.join(dest, name[len("mindspore/"):])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as out:
            out.write(src.read())
        count += 1
if count == 0:
    sys.exit("error: %s has no mindspore/include/ headers" % os.path.basename(wheel))
print("extracted %d header files" % count)
PY

if [ ! -f "${TMP}/headers/include/api/model.h" ]; then
    echo "error: the wheel has no mindspore/include/api/model.h (use a 2.7.x wheel)" >&2
    exit 1
fi
mkdir -p "${DEST}"
cp -R "${TMP}/headers/." "${DEST}/"
echo "MindSpore C++ API headers ready: ${DEST}"
