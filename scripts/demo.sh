#!/usr/bin/env bash
# A short tour of arxctl on the embedded default: no cluster, no server.
set -euo pipefail
cd "$(dirname "$0")/.."
export ARX_HOME="${ARX_HOME:-$PWD/demo-state}"
export ARX_ACTOR="${ARX_ACTOR:-dana@bank.example}"
rm -rf "$ARX_HOME"

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then bold=$'\033[1m'; plain=$'\033[0m'; else bold=""; plain=""; fi
step() { printf '\n%s== %s%s\n$ %s\n' "$bold" "$1" "$plain" "${*:2}"; "${@:2}"; }

step "1. Validate every example manifest, policy and catalog (CI gates merges on this)" \
  arxctl validate examples/
step "2. Register them: each agent becomes version 1, each change lands in the audit chain" \
  arxctl register examples/catalogs examples/manifests examples/policies --reason "initial import"
step "3. What is running in prod in us-east? (the brief's selector syntax works too)" \
  arxctl agents list -l env:prod/region:us-east
step "4. One agent: owner, purpose, connector graph, and the highest score it can reach" \
  arxctl agents show triage-cs-01
step "5. The same graph as Mermaid, for a pull request or a wiki" \
  arxctl agents graph triage-cs-01 --format mermaid
step "6. The newest records of the hash-chained audit trail" \
  arxctl chain show --tail 5
step "7. Recompute every hash and link: an auditor's first check" \
  arxctl chain verify
printf '\nState is in %s; run "arxctl --help" to see every command.\n' "$ARX_HOME"
