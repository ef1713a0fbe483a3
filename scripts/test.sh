#!/usr/bin/env bash
# Set up everything the tests need from this repository's own files, then run the test suite.
# Used by the README and by .ci/run (one command, no private variant).
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned CPU torch first: an unpinned torch would pull a multi-GB CUDA build (docs/engineering-notes.md).
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e ".[dev]"

# System Chromium for the browser tests (Playwright must not download its own browser).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi

set +e
python3 -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
    echo "pytest collected no tests: treating as a failure" >&2
    exit 1
fi
exit "$rc"
