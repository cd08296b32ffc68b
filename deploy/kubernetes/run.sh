#!/usr/bin/env bash
# Runs one plan on Kubernetes and merges it: sets a common start time,
# applies deploy/kubernetes (serve, its Service, the Indexed Job of agents),
# waits for the Job, collects each agent's report with `kubectl logs` and
# merges them with `tcpmax merge`.
#
#   deploy/kubernetes/run.sh [OUT_DIR]
#
# Environment: START_DELAY seconds from now to the common start (default
# 120: time for the pods to be scheduled and pull the image), NAMESPACE
# (default tcpmax), TIMEOUT seconds to wait for the Job (default 3600),
# TCPMAX the tcpmax binary that merges (default: tcpmax on PATH).
# The plan itself (agents, connections, hold, image) is in kustomization.yaml.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-tcpmax-results}
ns=${NAMESPACE:-tcpmax}
delay=${START_DELAY:-120}
timeout=${TIMEOUT:-3600}
tcpmax=${TCPMAX:-tcpmax}

start=$(date -u -d "+${delay} sec" +%Y-%m-%dT%H:%M:%SZ)
overlay=$(mktemp -d)
trap 'rm -rf "$overlay"' EXIT
cat >"$overlay/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$overlay" "$here")
configMapGenerator:
  - name: tcpmax-plan
    namespace: $ns
    behavior: merge
    options:
      disableNameSuffixHash: true
    literals:
      - start-at=$start
YAML

echo "== start at $start (in ${delay} s)"
# A Job's pod template cannot change: the previous run's Job goes first.
kubectl delete job tcpmax-load -n "$ns" --ignore-not-found --wait=true
kubectl apply -k "$overlay"
kubectl rollout status deployment/tcpmax-serve -n "$ns" --timeout="${delay}s"

echo "== waiting for the agents (at most ${timeout} s)"
n=$(kubectl get job tcpmax-load -n "$ns" -o jsonpath='{.spec.completions}')
deadline=$((SECONDS + timeout))
while :; do
  read -r ok failed < <(kubectl get job tcpmax-load -n "$ns" -o jsonpath='{.status.succeeded} {.status.failed}{"\n"}' | sed 's/^ /0 /')
  if [ "${ok:-0}" = "$n" ]; then break; fi
  if [ "${failed:-0}" != "0" ] || [ $SECONDS -ge $deadline ]; then
    echo "the Job did not complete: $n agents, ${ok:-0} succeeded, ${failed:-0} failed; collecting what there is" >&2
    break
  fi
  sleep 5
done

echo "== collecting $n reports into $out/"
mkdir -p "$out"
reports=()
for i in $(seq 0 $((n - 1))); do
  f="$out/agent-$i.json"
  # --tail=-1: with a selector, kubectl logs shows only 10 lines by default.
  kubectl logs -n "$ns" -l "job-name=tcpmax-load,batch.kubernetes.io/job-completion-index=$i" --tail=-1 >"$f" || true
  reports+=("$f")
done

echo "== merging"
"$tcpmax" merge "${reports[@]}" --json "$out/merged.json"
