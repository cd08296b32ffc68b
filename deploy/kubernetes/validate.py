#!/usr/bin/env python3
"""Validates tcpmax's Kubernetes manifests offline.

1. Every resource against the Kubernetes schemas bundled in the
   kubernetes-validate package, strict (an unknown or misspelt field fails),
   for the oldest Kubernetes the manifests support and the newest the
   package knows. A kind with no schema fails too (a typo in `kind` or
   `apiVersion` would otherwise pass with a warning).
2. Checks of our own where those schemas leave a field open: the enum values
   (completionMode, restartPolicy, Service type, ...), quantities, that every
   container has CPU and memory requests and limits, that pod sysctls are on
   Kubernetes' safe list, and the invariants of a tcpmax run: an Indexed Job
   of agents runs all its pods at once (parallelism = completions = the
   plan's agents, or the late ones would miss the common start), and each
   agent prints only its JSON report (--json - --quiet) for `kubectl logs`.

The resources: each file of the kustomization as written, and the whole
rendered by `kubectl kustomize`, or, without kubectl, by the small part of
kustomize these manifests use (tiny_render below).

usage: validate.py [DIR]    (default: the directory of this script)
exit: 0 valid; 1 a problem (one line each); 2 kubernetes-validate missing.
"""

import copy
import json
import os
import re
import shutil
import subprocess
import sys

try:
    import kubernetes_validate
    import yaml
except ImportError as e:
    print(f"validate.py: {e}: pip install kubernetes-validate", file=sys.stderr)
    sys.exit(2)

# Indexed Jobs are GA since 1.24; pods carry the completion-index label
# that run.sh selects on since 1.28.
OLDEST = "1.28.0"

SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ping_group_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}

# Paths below a pod spec ("[]" walks a list) and the values Kubernetes
# accepts there; its OpenAPI schemas only say "string".
POD_ENUMS = {
    "dnsPolicy": {"ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"},
    "securityContext.seccompProfile.type": {"RuntimeDefault", "Localhost", "Unconfined"},
    "topologySpreadConstraints.[].whenUnsatisfiable": {"DoNotSchedule", "ScheduleAnyway"},
    "containers.[].imagePullPolicy": {"Always", "IfNotPresent", "Never"},
    "containers.[].terminationMessagePolicy": {"File", "FallbackToLogsOnError"},
    "containers.[].ports.[].protocol": {"TCP", "UDP", "SCTP"},
    "containers.[].securityContext.seccompProfile.type": {"RuntimeDefault", "Localhost", "Unconfined"},
    "initContainers.[].imagePullPolicy": {"Always", "IfNotPresent", "Never"},
}
KIND_ENUMS = {
    "Job": {
        "spec.completionMode": {"Indexed", "NonIndexed"},
        "spec.template.spec.restartPolicy": {"OnFailure", "Never"},
    },
    "Deployment": {
        "spec.strategy.type": {"Recreate", "RollingUpdate"},
        "spec.template.spec.restartPolicy": {"Always"},
    },
    "StatefulSet": {
        "spec.podManagementPolicy": {"OrderedReady", "Parallel"},
        "spec.template.spec.restartPolicy": {"Always"},
    },
    "Service": {
        "spec.type": {"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"},
        "spec.ports.[].protocol": {"TCP", "UDP", "SCTP"},
        "spec.sessionAffinity": {"ClientIP", "None"},
        "spec.externalTrafficPolicy": {"Cluster", "Local"},
        "spec.internalTrafficPolicy": {"Cluster", "Local"},
    },
}
POD_SPEC = {
    "Pod": "spec",
    "Deployment": "spec.template.spec",
    "StatefulSet": "spec.template.spec",
    "DaemonSet": "spec.template.spec",
    "ReplicaSet": "spec.template.spec",
    "Job": "spec.template.spec",
    "CronJob": "spec.jobTemplate.spec.template.spec",
}
QUANTITY = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")
SUFFIX = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
SUFFIX.update({"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60})


def walk(obj, path, where=""):
    """Yields (where, value) for every value at the dotted `path`."""
    if not path:
        yield where, obj
        return
    head, rest = path[0], path[1:]
    if head == "[]":
        if isinstance(obj, list):
            for i, item in enumerate(obj):
                yield from walk(item, rest, f"{where}[{i}]")
    elif isinstance(obj, dict) and head in obj:
        yield from walk(obj[head], rest, f"{where}.{head}" if where else head)


def at(obj, dotted):
    return list(walk(obj, dotted.split("."))) if dotted else [("", obj)]


def quantity(text):
    m = QUANTITY.match(str(text))
    if not m:
        return None
    suffix = m.group(3) or ""
    if suffix and suffix[0] in "eE":
        return float(m.group(1)) * 10 ** int(suffix[1:])
    return float(m.group(1)) * SUFFIX[suffix]


def name(res):
    return f"{res.get('kind', '?')}/{res.get('metadata', {}).get('name', '?')}"


def own_checks(res):
    """Our checks of one resource: a list of problems."""
    problems = []
    kind = res.get("kind")
    for path, allowed in KIND_ENUMS.get(kind, {}).items():
        for where, value in at(res, path):
            if value not in allowed:
                problems.append(f"{name(res)}: {where} is {value!r}, not one of {sorted(allowed)}")
    pod_path = POD_SPEC.get(kind)
    for pod_where, pod in at(res, pod_path) if pod_path else []:
        for path, allowed in POD_ENUMS.items():
            for where, value in walk(pod, path.split("."), pod_where):
                if value not in allowed:
                    problems.append(f"{name(res)}: {where} is {value!r}, not one of {sorted(allowed)}")
        for where, sysctl in walk(pod, "securityContext.sysctls.[].name".split("."), pod_where):
            if sysctl not in SAFE_SYSCTLS:
                problems.append(
                    f"{name(res)}: {where} {sysctl!r} is not on Kubernetes' safe list: pods using it are refused unless every kubelet allows it"
                )
        for where, c in walk(pod, ["containers", "[]"], pod_where):
            problems += container_resources(res, where, c)
    return problems


def container_resources(res, where, c):
    problems = []
    r = c.get("resources") or {}
    for part in ("requests", "limits"):
        for key in ("cpu", "memory"):
            value = (r.get(part) or {}).get(key)
            if value is None:
                problems.append(f"{name(res)}: {where}.resources.{part}.{key} is missing")
            elif quantity(value) is None:
                problems.append(f"{name(res)}: {where}.resources.{part}.{key} {value!r} is not a quantity")
    for key in ("cpu", "memory"):
        req, lim = (quantity((r.get(p) or {}).get(key, "")) for p in ("requests", "limits"))
        if req is not None and lim is not None and req > lim:
            problems.append(f"{name(res)}: {where}.resources: the {key} request is above the limit")
    return problems


def tcpmax_checks(resources):
    """The invariants of a tcpmax run across resources."""
    problems = []
    plan = next((r for r in resources if r.get("kind") == "ConfigMap" and r["metadata"]["name"].startswith("tcpmax-plan")), None)
    for job in (r for r in resources if r.get("kind") == "Job"):
        spec = job.get("spec", {})
        if spec.get("completionMode") != "Indexed":
            continue
        if spec.get("parallelism") != spec.get("completions"):
            problems.append(
                f"{name(job)}: parallelism {spec.get('parallelism')} differs from completions {spec.get('completions')}: the agents run at once or the late ones miss the common --start-at"
            )
        agents = (plan or {}).get("data", {}).get("agents")
        if agents is not None and str(spec.get("completions")) != str(agents):
            problems.append(f"{name(job)}: completions {spec.get('completions')} differs from tcpmax-plan's agents {agents}")
        for where, c in walk(spec, "template.spec.containers.[]".split("."), "spec"):
            args = [str(a) for a in c.get("args", [])]
            if args[:1] != ["load"]:
                continue
            for flag in ("--agents", "--start-at", "--quiet"):
                if flag not in args:
                    problems.append(f"{name(job)}: {where}.args lack {flag}")
            if "--json" not in args or args[args.index("--json") + 1 : args.index("--json") + 2] != ["-"]:
                problems.append(f"{name(job)}: {where}.args lack `--json -`: kubectl logs collects the reports from stdout")
    return problems


def load_yaml(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def as_written(directory):
    """Each file of the kustomization's resources, as written."""
    kz = load_yaml(os.path.join(directory, "kustomization.yaml"))[0]
    out = []
    for rel in kz.get("resources", []):
        out += [(rel, r) for r in load_yaml(os.path.join(directory, rel))]
    return kz, out


def tiny_render(kz, written):
    """The part of kustomize these manifests use, for a machine without
    kubectl: the namespace, ConfigMaps from literals, replacements of plain
    dotted fields, image names. Anything else is refused."""
    known = {"apiVersion", "kind", "namespace", "labels", "resources", "images", "configMapGenerator", "replacements"}
    unknown = sorted(set(kz) - known)
    if unknown:
        raise ValueError(f"kustomization fields {unknown} need kubectl kustomize")
    resources = [copy.deepcopy(r) for _, r in written]
    for gen in kz.get("configMapGenerator", []):
        data = dict(lit.split("=", 1) for lit in gen.get("literals", []))
        resources.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})
    for r in resources:
        if kz.get("namespace") and r.get("kind") != "Namespace":
            r["metadata"]["namespace"] = kz["namespace"]
        for label in kz.get("labels", []):
            r["metadata"].setdefault("labels", {}).update(label.get("pairs", {}))

    def find(kind, name):
        return next(r for r in resources if r.get("kind") == kind and r["metadata"]["name"] == name)

    for rep in kz.get("replacements", []):
        src = rep["source"]
        value = find(src["kind"], src["name"])
        for key in src["fieldPath"].split("."):
            value = value[key]
        for target in rep["targets"]:
            obj = find(target["select"]["kind"], target["select"]["name"])
            for path in target["fieldPaths"]:
                *parents, last = path.split(".")
                node = obj
                for key in parents:
                    node = node[key]
                old = node.get(last)
                node[last] = int(value) if isinstance(old, int) and str(value).isdigit() else value
    for image in kz.get("images", []):
        for r in resources:
            for pod_path in filter(None, [POD_SPEC.get(r.get("kind"))]):
                for _, c in walk(r, pod_path.split(".") + ["containers", "[]"]):
                    if c.get("image") == image["name"]:
                        c["image"] = f"{image.get('newName', image['name'])}:{image.get('newTag', 'latest')}"
    return [("rendered by validate.py", r) for r in resources]


def rendered(directory, kz, written):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        try:
            return tiny_render(kz, written), "kubectl not found: rendered by validate.py's own small kustomize"
        except (KeyError, ValueError, StopIteration) as e:
            return None, f"cannot render without kubectl: {e}"
    run = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True)
    if run.returncode != 0:
        return None, f"kubectl kustomize {directory} failed: {run.stderr.strip()}"
    render = [("rendered", r) for r in yaml.safe_load_all(run.stdout) if r]
    # The fallback must render what kubectl renders, or it validates
    # something else: compared whenever kubectl is here.
    try:
        ours = tiny_render(kz, written)
    except (KeyError, ValueError, StopIteration):
        return render, None
    canon = lambda rs: sorted(json.dumps(r, sort_keys=True) for _, r in rs)  # noqa: E731
    if canon(ours) != canon(render):
        return None, "validate.py's small kustomize renders differently from kubectl kustomize: fix tiny_render"
    return render, None


def schema_problems(where, res, versions):
    problems = []
    for version in versions:
        try:
            kubernetes_validate.validate(res, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            problems.append(f"{where}: {name(res)} against Kubernetes {e.version}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            problems.append(f"{where}: {name(res)}: {e.message}")
        except Exception as e:  # noqa: BLE001 - a malformed resource is a problem to report, not a crash
            problems.append(f"{where}: {name(res)} could not be validated: {e}")
    return problems


def main(argv):
    directory = argv[1] if len(argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    versions = [OLDEST, kubernetes_validate.latest_version()]
    problems = []
    kz, written = as_written(directory)
    render, note = rendered(directory, kz, written)
    if render is None:
        problems.append(note)
    # Each file as written, then the whole as rendered (where the
    # kustomization's parameters are applied and the run's invariants hold).
    for where, res in written + (render or []):
        problems += schema_problems(where, res, versions)
        problems += [f"{where}: {p}" for p in own_checks(res)]
    problems += tcpmax_checks([r for _, r in render or []])
    problems = list(dict.fromkeys(problems))
    for p in problems:
        print(f"INVALID {p}")
    if problems:
        print(f"{len(problems)} problem(s) in {directory}", file=sys.stderr)
        return 1
    if note:
        print(f"note: {note}")
    print(
        f"ok: {len(written)} resources as written, {len(render)} rendered; strict against Kubernetes {' and '.join(versions)}; tcpmax's checks pass"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
