#!/usr/bin/env bash
# A short tour of arxctl on the embedded default: no cluster, no server.
set -euo pipefail
cd "$(dirname "$0")/.."
export ARX_HOME="${ARX_HOME:-$PWD/demo-state}"
export ARX_ACTOR="${ARX_ACTOR:-dana@bank.example}"
rm -rf "$ARX_HOME"

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then bold=$'\033[1m'; plain=$'\033[0m'; else bold=""; plain=""; fi
step() { printf '\n%s== %s%s\n$ %s\n' "$bold" "$1" "$plain" "${*:2}"; "${@:2}"; }
# A step whose command is expected to exit 1 (a gate tripping, a finding): show it, keep going.
expect_1() {
  printf '\n%s== %s%s\n$ %s\n' "$bold" "$1" "$plain" "${*:2}"
  local rc=0; "${@:2}" || rc=$?
  [ "$rc" -eq 1 ] || { echo "expected exit 1, got $rc" >&2; exit 1; }
  echo "(exit 1, as a CI job would see it)"
}

step "1. Validate the manifests, policies and catalog (CI gates merges on this)" \
  arxctl validate examples/catalogs examples/manifests examples/policies
step "2. Register them: each agent becomes version 1, each change lands in the audit chain" \
  arxctl register examples/catalogs examples/manifests examples/policies --reason "initial import"
step "3. What is running in prod in us-east? (the brief's selector syntax works too)" \
  arxctl agents list -l env:prod/region:us-east
step "4. One agent: owner, purpose, connector graph, and the highest score it can reach" \
  arxctl agents show triage-cs-01
step "5. Decide a call: closing two changes at once needs a secops lead (score 56 + the brief's rule)" \
  arxctl decide --agent triage-cs-01 --action servicenow.change.close \
    --payload '{"change_ids": ["CHG0031", "CHG0032"]}' --session s-8f2c --record
step "6. An action outside the manifest fails closed: DENY, score 100" \
  arxctl decide --agent pr-reviewer --action github.pulls.merge --payload '{"pull_number": 42}' --record
expect_1 "7. Before enforcing tighter thresholds, replay a morning of activity against them (gate: no new denies)" \
  arxctl simulate examples/activity/sample.ndjson --policy examples/proposed --max-new-denies 0
step "8. Find connector calls in an agent's code that its manifest does not declare" \
  arxctl analyze examples/agents/triage --manifest examples/manifests/triage-cs-01.yaml
step "9. Suspend an agent: every call is now denied at the intercept, before policy runs" \
  arxctl agents suspend incident-responder --reason "investigating INC-2041"
step "   ...and its next call" \
  arxctl decide --agent incident-responder --action pagerduty.incident.read --payload '{}'
step "10. The newest records of the hash-chained audit trail" \
  arxctl chain show --tail 6
step "11. Recompute every hash and link: an auditor's first check" \
  arxctl chain verify
step "12. Where does this fleet stand? (Stuck / Operating / Scaling, with what is missing)" \
  arxctl assess
printf '\nState is in %s; run "arxctl --help" to see every command.\n' "$ARX_HOME"
