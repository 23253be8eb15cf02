"""deploy/: the manifests are valid Kubernetes objects, their Corefiles pass
check-config, their arguments exist, their RBAC is exactly what the index
watches; the image script says why it cannot build (the build and its checks
themselves run in .ci/run, or here with FASTDNS_IMAGE_BUILD=1).

Manifests are deserialized into the official ``kubernetes`` client's models;
those ignore unknown keys, so every key of the YAML must come back when the
model is serialized again (a misspelt field fails, see the negative test).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient

from fastdns.bench.queries import parse_query_lines
from fastdns.bench.testserver import ScriptedServer
from fastdns.config import parse
from fastdns.config.nodelocal import fill_nodelocal_placeholders
from fastdns.plugins.kubernetes.source import WatchSource

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
MANIFESTS = sorted(p for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")
API = ApiClient()
# data → model, as the client does with an API response
DESERIALIZE = API._ApiClient__deserialize  # type: ignore[attr-defined]

# Loopback stand-ins for the cluster's addresses (parsed, never contacted).
LOCAL_DNS = "127.0.20.10"     # __PILLAR__LOCAL__DNS__ (169.254.20.10 in a cluster)
KUBE_DNS = "127.0.0.10"       # __PILLAR__DNS__SERVER__ (the kube-dns Service IP)
UPSTREAM_SVC = "127.0.0.11"   # $KUBE_DNS_UPSTREAM_SERVICE_HOST → __PILLAR__CLUSTER__DNS__


# -- helpers ------------------------------------------------------------------------

def load_docs(path: Path, text: str | None = None) -> list[dict[str, Any]]:
    """Every non-empty YAML document of a manifest."""
    return [d for d in yaml.safe_load_all(text if text is not None else path.read_text()) if d]


def all_docs() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p in MANIFESTS for d in load_docs(p)]


def model_name(doc: dict[str, Any]) -> str:
    """``apps/v1`` + ``Deployment`` → ``V1Deployment`` (the client's class name)."""
    version = doc["apiVersion"].rsplit("/", 1)[-1]
    return version[0].upper() + version[1:] + doc["kind"]


def key_mismatches(orig: Any, back: Any, path: str = "") -> list[str]:
    """Where ``orig`` (the YAML) and ``back`` (model → sanitize_for_serialization) differ."""
    if isinstance(orig, dict):
        if not isinstance(back, dict):
            return [f"{path or '/'}: became {type(back).__name__}"]
        out = [f"{path}.{k}: unknown field" for k in orig if k not in back]
        out += [f"{path}.{k}: appeared" for k in back if k not in orig]
        for k in orig:
            if k in back:
                out += key_mismatches(orig[k], back[k], f"{path}.{k}")
        return out
    if isinstance(orig, list):
        if not isinstance(back, list) or len(back) != len(orig):
            return [f"{path}: list changed"]
        return [m for i, (a, b) in enumerate(zip(orig, back)) for m in key_mismatches(a, b, f"{path}[{i}]")]
    if type(orig) is not type(back) or orig != back:
        return [f"{path}: {orig!r} became {back!r}"]
    return []


def roundtrip(doc: dict[str, Any]) -> list[str]:
    """Deserialize into the client's model and list what did not survive."""
    try:
        obj = DESERIALIZE(copy.deepcopy(doc), model_name(doc))
    except ValueError as exc:  # the models' validation (pydantic's ValidationError)
        return [f"invalid {model_name(doc)}: {exc}"]
    return key_mismatches(doc, API.sanitize_for_serialization(obj))


def find(kind: str, name: str, path: Path) -> dict[str, Any]:
    for d in load_docs(path):
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    raise AssertionError(f"{path.name}: no {kind} {name}")


def containers() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path, doc in all_docs():
        spec = doc.get("spec", {}).get("template", {}).get("spec")
        if spec:
            out += [(f"{path.name}:{doc['kind']}/{c['name']}", c) for c in spec["containers"]]
    return out


@pytest.fixture
def resolv(tmp_path: Path) -> Path:
    """Our own resolv.conf (never the machine's): ``forward . FILE`` reads it at parse time."""
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 127.0.0.1\n")
    return path


def check_config(text: str, tmp_path: Path, resolv: Path, name: str) -> subprocess.CompletedProcess:
    corefile = tmp_path / name
    corefile.write_text(text.replace("/etc/resolv.conf", str(resolv)))
    return subprocess.run([sys.executable, "-m", "fastdns", "check-config", str(corefile)],
                          check=False, capture_output=True, text=True, timeout=60, cwd=ROOT)


def sed_nodelocal(text: str, mode: str) -> str:
    """The addon documentation's ``sed`` for kube-proxy in iptables or IPVS mode."""
    text = text.replace("__PILLAR__LOCAL__DNS__", LOCAL_DNS)
    text = text.replace("__PILLAR__DNS__DOMAIN__", "cluster.local")
    if mode == "iptables":
        return text.replace("__PILLAR__DNS__SERVER__", KUBE_DNS)
    text = text.replace(",__PILLAR__DNS__SERVER__", "")
    return text.replace("__PILLAR__CLUSTER__DNS__", KUBE_DNS)


# -- every object is a valid Kubernetes object --------------------------------------

def test_manifests_exist() -> None:
    assert {p.name for p in MANIFESTS} == {"cluster-dns.yaml", "node-local.yaml", "bench-job.yaml"}


@pytest.mark.parametrize("path,doc", all_docs(),
                         ids=[f"{p.name}:{d['kind']}/{d['metadata']['name']}" for p, d in all_docs()])
def test_object_deserializes_into_client_model(path: Path, doc: dict[str, Any]) -> None:
    assert roundtrip(doc) == []


def test_misspelt_field_is_detected() -> None:
    doc = find("Deployment", "fastdns", DEPLOY / "cluster-dns.yaml")
    bad = copy.deepcopy(doc)
    c = bad["spec"]["template"]["spec"]["containers"][0]
    c["readynessProbe"] = c.pop("readinessProbe")
    bad["spec"]["template"]["spec"]["serviceAcountName"] = "fastdns"
    # The client alone accepts it (it drops unknown keys silently) ...
    obj = DESERIALIZE(copy.deepcopy(bad), "V1Deployment")
    assert obj.spec.template.spec.containers[0].readiness_probe is None
    # ... the round trip does not.
    assert sorted(roundtrip(bad)) == [".spec.template.spec.containers[0].readynessProbe: unknown field",
                                      ".spec.template.spec.serviceAcountName: unknown field"]
    # A value of the wrong type is caught too (by the models' validation).
    bad = copy.deepcopy(doc)
    bad["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "53"
    (err,) = roundtrip(bad)
    assert err.startswith("invalid V1Deployment:") and "containerPort" in err, err


def test_kustomization_builds_cluster_dns() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (kustomize is built into it)")
    out = subprocess.run([kubectl, "kustomize", str(DEPLOY)], check=False, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    built = load_docs(DEPLOY, out.stdout)
    assert sorted((d["kind"], d["metadata"]["name"]) for d in built) == sorted(
        (d["kind"], d["metadata"]["name"]) for d in load_docs(DEPLOY / "cluster-dns.yaml"))
    for d in built:
        assert roundtrip(d) == []


# -- kubeadm's shape: labels, Service, probes, metrics ---------------------------------

def test_cluster_dns_keeps_kube_dns_service_and_labels() -> None:
    path = DEPLOY / "cluster-dns.yaml"
    svc = find("Service", "kube-dns", path)
    dep = find("Deployment", "fastdns", path)
    assert svc["spec"]["selector"] == {"k8s-app": "kube-dns"}
    assert {(p["port"], p["protocol"]) for p in svc["spec"]["ports"]} == {
        (53, "UDP"), (53, "TCP"), (9153, "TCP")}
    pod = dep["spec"]["template"]
    # The Service selects fastdns's pods; the Deployment never selects CoreDNS's
    # (which carry only k8s-app: kube-dns).
    assert pod["metadata"]["labels"].items() >= svc["spec"]["selector"].items()
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert not dep["spec"]["selector"]["matchLabels"].items() <= {"k8s-app": "kube-dns"}.items()
    assert pod["metadata"]["annotations"] == {"prometheus.io/port": "9153",
                                              "prometheus.io/scrape": "true"}
    c = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert (c["livenessProbe"]["httpGet"]["path"], ports[c["livenessProbe"]["httpGet"]["port"]]) == (
        "/health", 8080)
    assert (c["readinessProbe"]["httpGet"]["path"], ports[c["readinessProbe"]["httpGet"]["port"]]) == (
        "/ready", 8181)
    assert c["securityContext"]["capabilities"] == {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_workers_come_from_the_cpu_limit() -> None:
    for where, c in containers():
        if "--workers" not in c.get("args", []):
            continue
        assert c["args"][c["args"].index("--workers") + 1] == "$(FASTDNS_WORKERS)", where
        env = {e["name"]: e for e in c["env"]}
        ref = env["FASTDNS_WORKERS"]["valueFrom"]["resourceFieldRef"]
        assert (ref["resource"], ref["divisor"], ref["containerName"]) == ("limits.cpu", "1", c["name"])
        # Without a limit the downward API reports the node's allocatable CPUs.
        assert "cpu" in c["resources"]["limits"], where


def test_every_arg_reference_is_defined() -> None:
    """``$(VAR)`` in args must be an env var of the container (or, for the
    bench Job in kube-system, the kube-dns Service's variable)."""
    service_vars = {"KUBE_DNS_SERVICE_HOST"}
    for where, c in containers():
        defined = {e["name"] for e in c.get("env", [])} | service_vars
        for ref in re.findall(r"\$\((\w+)\)", " ".join(c.get("args", []))):
            assert ref in defined, f"{where}: $({ref}) is not defined"


# -- Corefiles pass check-config ------------------------------------------------------

def corefiles() -> list[tuple[str, str]]:
    out = []
    for path, doc in all_docs():
        if doc["kind"] == "ConfigMap":
            out += [(f"{path.name}:{doc['metadata']['name']}/{k}", v)
                    for k, v in doc["data"].items() if k.startswith("Corefile")]
    return out


def test_two_corefiles_found() -> None:
    assert [w for w, _ in corefiles()] == ["cluster-dns.yaml:fastdns/Corefile",
                                           "node-local.yaml:node-local-dns/Corefile"]


@pytest.mark.parametrize("where,text", corefiles(), ids=[w for w, _ in corefiles()])
def test_configmap_corefile_passes_check_config(where: str, text: str, tmp_path: Path,
                                                resolv: Path) -> None:
    if "__PILLAR__" in text:
        text = fill_nodelocal_placeholders(text, LOCAL_DNS, KUBE_DNS, UPSTREAM_SVC,
                                           str(resolv), "cluster.local")
        assert "__PILLAR__" not in text
    r = check_config(text, tmp_path, resolv, "Corefile")
    assert r.returncode == 0, f"{where}:\n{r.stderr}"
    assert "Traceback" not in r.stderr


def test_check_config_fails_on_a_broken_configmap(tmp_path: Path, resolv: Path) -> None:
    text = dict(corefiles())["cluster-dns.yaml:fastdns/Corefile"]
    broken = text.replace("disable success", "disable sucess")
    assert broken != text
    r = check_config(broken, tmp_path, resolv, "Corefile")
    assert r.returncode == 1 and re.search(r"Corefile:\d+:\d+: ", r.stderr), r.stderr


def _serve_args(path: Path, kind: str, name: str) -> list[str]:
    doc = find(kind, name, path)
    return doc["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.parametrize("mode", ["iptables", "ipvs"])
def test_node_local_after_the_addons_sed(mode: str, tmp_path: Path, resolv: Path) -> None:
    """The whole flow: the administrator's sed on the manifest, then what
    fastdns fills from its arguments, gives a Corefile binding the right
    addresses and forwarding the cluster zones over TCP."""
    text = sed_nodelocal((DEPLOY / "node-local.yaml").read_text(), mode)
    path = tmp_path / "node-local.yaml"
    path.write_text(text)
    ds = find("DaemonSet", "node-local-dns", path)
    assert "__PILLAR__" not in yaml.safe_dump(ds)
    args = _serve_args(path, "DaemonSet", "node-local-dns")
    localip = args[args.index("--localip") + 1]
    corefile = find("ConfigMap", "node-local-dns", path)["data"]["Corefile"]
    # What serve fills at start (node-cache's runtime placeholders).
    filled = fill_nodelocal_placeholders(corefile, localip, None, UPSTREAM_SVC, str(resolv))
    assert "__PILLAR__" not in filled
    r = check_config(filled, tmp_path, resolv, "Corefile")
    assert r.returncode == 0, r.stderr
    plan = parse(filled.replace("/etc/resolv.conf", str(resolv)), env={})
    binds = (LOCAL_DNS, KUBE_DNS) if mode == "iptables" else (LOCAL_DNS,)
    assert {s.bind for s in plan.servers} == {binds}
    cluster_to = UPSTREAM_SVC if mode == "iptables" else KUBE_DNS
    for server in plan.servers[:3]:
        fwd = server.plugin("forward")
        assert fwd is not None and fwd.force_tcp and [str(u) for u in fwd.to] == [f"dns://{cluster_to}:53"]
    health = plan.servers[0].plugin("health")
    assert health is not None and health.address == f"{LOCAL_DNS}:8080"
    assert ds["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["host"] == LOCAL_DNS


def _doc_seds() -> list[str]:
    text = (ROOT / "docs" / "deploy.md").read_text()
    return [ln.strip() for ln in text.splitlines() if ln.strip().startswith("sed -i ")]


@pytest.mark.parametrize("mode", ["iptables", "ipvs"])
def test_docs_sed_leaves_only_what_fastdns_fills(mode: str, tmp_path: Path) -> None:
    """Run docs/deploy.md's own sed line on a copy of node-local.yaml."""
    if shutil.which("sed") is None:
        pytest.skip("no sed")
    seds = _doc_seds()
    assert len(seds) == 2, seds
    line = seds[0] if mode == "iptables" else seds[1]
    copy_ = tmp_path / "node-local.yaml"
    copy_.write_text((DEPLOY / "node-local.yaml").read_text())
    script = f"kubedns={KUBE_DNS}; domain=cluster.local; localdns={LOCAL_DNS}; " + line.replace(
        "deploy/node-local.yaml", str(copy_))
    subprocess.run(["bash", "-c", script], check=True, timeout=30)
    assert copy_.read_text() == sed_nodelocal((DEPLOY / "node-local.yaml").read_text(), mode)
    ds = find("DaemonSet", "node-local-dns", copy_)
    assert "__PILLAR__" not in yaml.safe_dump(ds)
    corefile = find("ConfigMap", "node-local-dns", copy_)["data"]["Corefile"]
    left = set(re.findall(r"__PILLAR__\w+?__(?=\W)", corefile))
    expect = {"__PILLAR__UPSTREAM__SERVERS__"}
    expect |= {"__PILLAR__CLUSTER__DNS__"} if mode == "iptables" else {"__PILLAR__DNS__SERVER__"}
    assert left == expect


# -- arguments exist ------------------------------------------------------------------------

def _help_options(*argv: str) -> set[str]:
    r = subprocess.run([sys.executable, *argv, "--help"], check=False, capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", r.stdout))


@pytest.mark.parametrize("where,c", containers(), ids=[w for w, _ in containers()])
def test_container_args_exist(where: str, c: dict[str, Any]) -> None:
    command = c.get("command", ["fastdns"])  # the image's ENTRYPOINT is fastdns
    args = c["args"]
    module = {"fastdns": "fastdns", "fastdns-bench": "fastdns.cli.bench"}[command[0]]
    known = _help_options("-m", module, args[0])
    used = {a for a in args if a.startswith("--")}
    assert used and used <= known, f"{where}: {sorted(used - known)} not in `{command[0]} {args[0]} --help`"
    # And the real parser accepts the whole line (values included).
    concrete = [re.sub(r"\$\((\w+)\)", lambda m: {"FASTDNS_WORKERS": "2",
                                                    "JOB_COMPLETION_INDEX": "3"}.get(m[1], "127.0.0.1"), a)
                for a in args]
    concrete = [a.replace("__PILLAR__LOCAL__DNS__", LOCAL_DNS).replace("__PILLAR__DNS__SERVER__", KUBE_DNS)
                .replace("__START_AT__", "1700000000") for a in concrete]
    if command[0] == "fastdns":
        from fastdns.cli.main import build_parser
    else:
        from fastdns.cli.bench import build_parser
    build_parser().parse_args(concrete)


def test_bench_job_prints_json(tmp_path: Path) -> None:
    """The Job's command line, run against a loopback server, prints one JSON
    object on stdout (the Job's log)."""
    import json

    job = find("Job", "fastdns-bench", DEPLOY / "bench-job.yaml")
    queries = find("ConfigMap", "fastdns-bench-queries", DEPLOY / "bench-job.yaml")["data"]["queries.txt"]
    assert len(parse_query_lines(queries.splitlines())) == 7
    c = job["spec"]["template"]["spec"]["containers"][0]
    mount = c["volumeMounts"][0]["mountPath"]
    (tmp_path / "queries.txt").write_text(queries)
    with ScriptedServer() as srv:
        # pod 0 of the Indexed Job, the agreed start (the sed of the header) just ahead
        args = [a.replace("$(KUBE_DNS_SERVICE_HOST)", "127.0.0.1").replace(":53", f":{srv.port}")
                .replace(mount, str(tmp_path)).replace("$(JOB_COMPLETION_INDEX)", "0")
                .replace("__START_AT__", str(int(time.time()) + 1)) for a in c["args"]]
        args[args.index("--duration") + 1] = "1"
        r = subprocess.run([sys.executable, "-m", "fastdns.cli.bench", *args], check=False,
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    # The log holds the text summary, then the JSON object (indented, so it
    # is the lines from "{" to "}": docs/deploy.md extracts it with sed).
    lines = r.stdout.splitlines()
    start, end = lines.index("{"), len(lines) - lines[::-1].index("}")
    result = json.loads("\n".join(lines[start:end]))
    assert result["answered"] > 0 and result["server"] == f"127.0.0.1:{srv.port}", result
    assert result["share"]["index"] == 0 and result["share"]["of"] == job["spec"]["completions"]
    assert "start_unix" in result and "latency_hist" in result   # what `merge` needs


def test_bench_job_is_indexed_with_an_agreed_start() -> None:
    """N pods, each one share (from its completion index), one start instant
    (the __START_AT__ the header's sed fills in; fastdns-bench refuses it unfilled)."""
    path = DEPLOY / "bench-job.yaml"
    job = find("Job", "fastdns-bench", path)
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["parallelism"] == spec["completions"] > 1
    c = spec["template"]["spec"]["containers"][0]
    args = c["args"]
    assert args[args.index("--index") + 1] == "$(JOB_COMPLETION_INDEX)"
    assert args[args.index("--of") + 1] == str(spec["completions"])
    assert args[args.index("--start-at") + 1] == "__START_AT__"
    env = {e["name"]: e for e in c["env"]}
    assert env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']")
    header = path.read_text()
    assert 'sed "s/__START_AT__/$START_AT/"' in header and "fastdns-bench merge" in header
    # a failed pod is not retried late (it would start out of step)
    assert spec["backoffLimit"] == 0
    from fastdns.cli.bench import main
    assert main([*(a.replace("$(KUBE_DNS_SERVICE_HOST)", "127.0.0.1").replace("$(JOB_COMPLETION_INDEX)", "0")
                   for a in args)]) == 1


# -- RBAC: exactly what the index watches -----------------------------------------------

_RESOURCE = {"Namespace": ("", "namespaces"), "Service": ("", "services"),
             "EndpointSlice": ("discovery.k8s.io", "endpointslices"), "Pod": ("", "pods")}


def needed_grants(corefile: str, resolv: Path) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) the kubernetes plugin's WatchSource lists and watches."""
    plan = parse(corefile.replace("/etc/resolv.conf", str(resolv)), env={})
    need = set()
    for server in plan.servers:
        for conf in server.plugins_named("kubernetes"):
            src = WatchSource(conf, lambda delta: None, api_client=object())
            need |= {(*_RESOURCE[k], v) for k in src.kinds for v in ("list", "watch")}
    return need


def granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    out = set()
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule  # no names, no URLs
        out |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert not any("*" in t for t in out)
    return out


def test_cluster_role_grants_exactly_what_the_index_watches(resolv: Path) -> None:
    path = DEPLOY / "cluster-dns.yaml"
    corefile = find("ConfigMap", "fastdns", path)["data"]["Corefile"]
    need = needed_grants(corefile, resolv)
    assert need == {("", "services", "list"), ("", "services", "watch"),
                    ("", "namespaces", "list"), ("", "namespaces", "watch"),
                    ("discovery.k8s.io", "endpointslices", "list"),
                    ("discovery.k8s.io", "endpointslices", "watch")}
    assert granted(find("ClusterRole", "system:fastdns", path)) == need
    # `pods verified` would need pods, which this role does not grant.
    verified = corefile.replace("pods insecure", "pods verified")
    assert needed_grants(verified, resolv) - granted(find("ClusterRole", "system:fastdns", path)) == {
        ("", "pods", "list"), ("", "pods", "watch")}


def test_role_is_bound_to_the_deployments_service_account() -> None:
    path = DEPLOY / "cluster-dns.yaml"
    binding = find("ClusterRoleBinding", "system:fastdns", path)
    dep = find("Deployment", "fastdns", path)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": "system:fastdns"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "namespace": dep["metadata"]["namespace"],
                                    "name": dep["spec"]["template"]["spec"]["serviceAccountName"]}]
    find("ServiceAccount", binding["subjects"][0]["name"], path)


# -- the image ------------------------------------------------------------------------------

def test_dockerfile_shape() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    stages = [i for i, ln in enumerate(lines) if ln.startswith("FROM ")]
    assert len(stages) == 2
    build, runtime = lines[stages[0]:stages[1]], lines[stages[1]:]
    assert any("gcc" in ln for ln in build) and any("pip wheel" in ln for ln in build)
    assert not any("gcc" in ln for ln in runtime)
    assert "ENTRYPOINT [\"fastdns\"]" in runtime
    assert not any(ln.startswith("HEALTHCHECK") for ln in lines)
    user = [ln for ln in runtime if ln.startswith("USER ")]
    assert user and re.fullmatch(r"USER [1-9]\d*:\d+", user[-1])  # numeric, for runAsNonRoot
    assert any("cap_net_bind_service=+ep" in ln for ln in runtime)


def _path_without(tmp_path: Path, *hidden: str, extra: dict[str, str] | None = None) -> str:
    """A PATH with every command of this one except ``hidden``, plus ``extra`` scripts."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(d):
            continue
        for entry in os.scandir(d):
            target = bin_dir / entry.name
            if entry.name in hidden or target.exists() or not os.access(entry.path, os.X_OK):
                continue
            target.symlink_to(entry.path)
    for name, body in (extra or {}).items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    return str(bin_dir)


def _build_image(path: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path}
    return subprocess.run(["bash", str(DEPLOY / "build-image.sh"), *args], check=False,
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)


def test_build_image_without_any_engine_says_skipped_and_fails(tmp_path: Path) -> None:
    path = _path_without(tmp_path, "docker", "podman")
    r = _build_image(path)
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stdout == ""                                  # never "ok:"
    assert "skipped: no container engine (neither docker nor podman is installed)" in r.stderr
    r = _build_image(path, "--allow-skip")
    assert r.returncode == 0 and r.stdout == "" and "skipped: no container engine" in r.stderr


def test_build_image_docker_cli_without_daemon_is_no_engine(tmp_path: Path) -> None:
    path = _path_without(tmp_path, "docker", "podman", extra={
        "docker": 'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock." >&2; exit 1\n'})
    r = _build_image(path)
    assert r.returncode == 3 and r.stdout == "", r.stderr
    assert "docker: no daemon answers (Cannot connect to the Docker daemon" in r.stderr
    assert "podman: not installed" in r.stderr


def test_build_image_broken_engine_fails_not_skips(tmp_path: Path) -> None:
    path = _path_without(tmp_path, "docker", "podman", extra={
        "podman": 'echo "Error: cannot set up storage" >&2; exit 125\n'})
    r = _build_image(path)
    assert r.returncode == 1 and r.stdout == "", r.stderr
    assert "skipped" not in r.stderr
    assert "FAILED" in r.stderr and "podman: podman info failed (Error: cannot set up storage)" in r.stderr
    r = _build_image(path, "--engine", "podman", "--allow-skip")  # not a skip: still a failure
    assert r.returncode == 1 and "cannot set up storage" in r.stderr


@pytest.mark.parametrize("args,message", [
    (["--engine", "lxc"], "--engine must be docker or podman, not 'lxc'"),
    (["--bogus"], "unknown option '--bogus'"),
    (["--base"], "--base needs a value"),
    (["--mirror", "ftp://x"], "--mirror must be an http:// or https:// URL"),
    (["--ca-bundle", "/nonexistent/ca.pem"], "--ca-bundle /nonexistent/ca.pem: not a readable file"),
    (["a:1", "b:2"], "one IMAGE at most"),
    (["Bad Name"], "'Bad Name' is not an image name"),
])
def test_build_image_bad_usage(args: list[str], message: str) -> None:
    r = _build_image(os.environ.get("PATH", ""), *args)
    assert r.returncode == 2 and message in r.stderr and "usage:" in r.stderr, r.stderr
    assert r.stdout == ""


def test_build_image_help() -> None:
    r = _build_image(os.environ.get("PATH", ""), "--help")
    assert r.returncode == 0 and "--base auto|debootstrap|IMAGE" in r.stdout and "set -euo" not in r.stdout


def test_image_e2e_script_usage() -> None:
    """check 4's script: plain Python (it loads the netns harness from its file), clear usage errors."""
    script = [sys.executable, str(DEPLOY / "check-image-e2e.py")]
    r = subprocess.run([*script, "--help"], check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--engine" in r.stdout and "--run-arg" in r.stdout, r.stderr
    r = subprocess.run(script, check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "the following arguments are required: --engine, --image" in r.stderr
    r = subprocess.run([*script, "--engine", "lxc", "--image", "x"], check=False, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "invalid choice: 'lxc'" in r.stderr


@pytest.mark.skipif(os.environ.get("FASTDNS_IMAGE_BUILD") != "1",
                    reason="builds the image (minutes): FASTDNS_IMAGE_BUILD=1 runs it; "
                           ".ci/run runs deploy/build-image.sh itself")
def test_build_image_script() -> None:
    """Builds and checks the image (FASTDNS_IMAGE_BUILD_ARGS: e.g. --base debootstrap)."""
    args = os.environ.get("FASTDNS_IMAGE_BUILD_ARGS", "").split()
    r = subprocess.run([str(DEPLOY / "build-image.sh"), *args], check=False, capture_output=True,
                       text=True, timeout=3600, cwd=ROOT)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert r.returncode == 0 and last.startswith("ok: "), r.stdout + r.stderr[-5000:]


# -- serve without credentials --------------------------------------------------------

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_without_credentials(tmp_path: Path, env_extra: dict[str, str]) -> tuple[int, str]:
    port = _free_port()
    corefile = tmp_path / "Corefile"
    corefile.write_text(f".:{port} {{\n    bind 127.0.0.1\n    kubernetes cluster.local\n}}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env.update(env_extra)
    env["KUBECONFIG"] = str(tmp_path / "absent-kubeconfig")  # never the user's ~/.kube/config
    proc = subprocess.Popen([sys.executable, "-m", "fastdns", "serve", "--conf", str(corefile),
                             "--workers", "1", "--port", str(port)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"serve without credentials kept running:\n{out}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, out


def test_serve_in_pod_without_token_says_what_is_missing(tmp_path: Path) -> None:
    # In a pod: the API's address is set, the token is not mounted
    # (automountServiceAccountToken: false), no kubeconfig.
    assert not Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists()
    code, out = _serve_without_credentials(
        tmp_path, {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "1"})
    assert code == 1, out
    assert "Traceback" not in out
    assert "/var/run/secrets/kubernetes.io/serviceaccount/token" in out and "kubeconfig" in out, out


def test_serve_outside_a_cluster_says_what_is_missing(tmp_path: Path) -> None:
    code, out = _serve_without_credentials(tmp_path, {})
    assert code == 1, out
    assert "Traceback" not in out
    assert "KUBERNETES_SERVICE_HOST" in out and "kubeconfig" in out, out
