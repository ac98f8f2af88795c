#!/usr/bin/env bash
# End-to-end tests: boto3 + aws-cli against a real `berth server`.
#
# Usage: tests/python/run.sh [pytest args...]      e.g. tests/python/run.sh -k clusters -x
#
# - creates tests/python/.venv (python3 -m venv) when it is missing or when
#   requirements.txt / the python version changed, and installs requirements.txt;
# - builds target/debug/berth with `cargo build -p berth` when it is missing
#   (set BERTH_BIN to test another binary, BERTH_BUILD=1 to always rebuild,
#   BERTH_BUILD=0 to never build);
# - runs pytest on this directory and exits with pytest's exit code.
#
# Only the venv's own `aws` (.venv/bin/aws) is used by the tests, never one on PATH.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="$HERE/.venv"
REQ="$HERE/requirements.txt"
PYTHON="${PYTHON:-python3}"

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "run.sh: $PYTHON not found (need python3 >= 3.10)" >&2
    exit 2
fi

stamp_of() {
    { "$PYTHON" -c 'import sys; print(sys.version)'; cat "$REQ"; } | sha256sum | cut -d' ' -f1
}

want="$(stamp_of)"
have="$(cat "$VENV/.requirements.stamp" 2>/dev/null || true)"
if [[ ! -x "$VENV/bin/python" || ! -x "$VENV/bin/aws" || "$want" != "$have" ]]; then
    echo "run.sh: creating venv in $VENV" >&2
    if "$PYTHON" -m venv --clear "$VENV" 2>/dev/null; then
        "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$REQ"
    elif "$PYTHON" -m pip --version >/dev/null 2>&1 && "$PYTHON" -m venv --clear --without-pip "$VENV"; then
        # Debian without python3-venv (no ensurepip): let the system pip fill the venv
        "$PYTHON" -m pip --python "$VENV/bin/python" install --disable-pip-version-check --no-input -q -r "$REQ"
    else
        echo "run.sh: '$PYTHON -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2
        exit 2
    fi
    echo "$want" >"$VENV/.requirements.stamp"
fi

if [[ -z "${BERTH_BIN:-}" ]]; then
    bin="$REPO/target/debug/berth"
    build="${BERTH_BUILD:-auto}"
    if [[ "$build" == "1" || ( "$build" == "auto" && ! -x "$bin" ) ]]; then
        if command -v cargo >/dev/null 2>&1; then
            echo "run.sh: cargo build -p berth" >&2
            (cd "$REPO" && cargo build -p berth)
        else
            echo "run.sh: $bin is missing and cargo is not on PATH" >&2
        fi
    fi
fi

cd "$HERE"
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
exit $rc
