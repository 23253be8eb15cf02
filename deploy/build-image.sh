#!/usr/bin/env bash
# Build the fastdns image and check it: `fastdns check-config` on the
# manifests' Corefiles inside the image, the bundled demo answering a query,
# and a server on :53 as the manifests run it (uid 65532, every capability
# dropped but NET_BIND_SERVICE, no_new_privs, read-only root).
#
#   deploy/build-image.sh [IMAGE]        (default fastdns:<version>)
#
# Exit 0 with a line "skipped: <reason>" where no container engine or no
# base image registry is reachable; exit 0 with "ok: <image>" when built and
# checked; non-zero (with the failing step) otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' fastdns/_version.py)
image=${1:-fastdns:${version}}
base=${PYTHON_IMAGE:-python:3.11-slim}
name=fastdns-build-check-$$

skip() { echo "skipped: $*"; exit 0; }
step() { echo "+ $*" >&2; }
# probe CONTAINER PORT LABEL: ask the demo's nginx-svc inside the container until it answers
probe() {
    docker exec -i "$1" python3 - "$2" "$3" <<'PY'
import sys, time, dns.message, dns.query, dns.rcode
port, label = int(sys.argv[1]), sys.argv[2]
q = dns.message.make_query("nginx-svc.default.svc.cluster.local.", "A")
for _ in range(100):
    try:
        r = dns.query.udp(q, "127.0.0.1", port=port, timeout=0.5)
        break
    except Exception:
        time.sleep(0.2)
else:
    raise SystemExit(f"{label}: no answer on 127.0.0.1:{port}")
assert r.rcode() == dns.rcode.NOERROR and r.answer, r
print(f"{label}:", r.answer[0])
PY
}

command -v docker >/dev/null 2>&1 || skip "no docker CLI on PATH"
if ! out=$(timeout 20 docker info --format '{{.ServerVersion}}' 2>&1); then
    skip "no container engine reachable (docker info: $(echo "$out" | tail -n 1))"
fi
if ! docker image inspect "$base" >/dev/null 2>&1; then
    step "docker pull $base"
    if ! out=$(timeout 120 docker pull "$base" 2>&1); then
        skip "base image $base is not local and its registry is unreachable ($(echo "$out" | tail -n 1))"
    fi
fi

cleanup() { docker rm -f "$name" "$name-53" >/dev/null 2>&1 || true; }
trap cleanup EXIT

step "docker build -t $image"
DOCKER_BUILDKIT=1 docker build --build-arg "PYTHON_IMAGE=$base" -t "$image" . >&2

# 1. Every Corefile in the manifests' ConfigMaps passes check-config in the
#    image (node-local's after filling its placeholders as node-cache would).
step "check-config inside $image"
docker run --rm -i -v "$PWD/deploy:/deploy:ro" --entrypoint python3 "$image" - <<'PY'
import pathlib, subprocess, sys, tempfile, yaml
from fastdns.config.nodelocal import fill_nodelocal_placeholders
bad = 0
for path in sorted(pathlib.Path("/deploy").glob("*.yaml")):
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or doc.get("kind") != "ConfigMap":
            continue
        for key, text in (doc.get("data") or {}).items():
            if not key.startswith("Corefile"):
                continue
            if "__PILLAR__" in text:
                text = fill_nodelocal_placeholders(text, "169.254.20.10", "10.96.0.10",
                                                   "10.96.0.11", None, "cluster.local")
            with tempfile.NamedTemporaryFile("w", suffix=".Corefile", delete=False) as f:
                f.write(text)
            r = subprocess.run(["fastdns", "check-config", f.name], capture_output=True, text=True)
            print(f"{path.name}: {doc['metadata']['name']}/{key}: exit {r.returncode}")
            if r.returncode:
                print(r.stderr, file=sys.stderr)
                bad += 1
sys.exit(1 if bad else 0)
PY

# 2. The bundled demo answers (queried from inside the container: it listens
#    on the container's loopback).
step "demo: fastdns serve + a query for nginx-svc.default.svc.cluster.local"
docker run -d --name "$name" "$image" serve >/dev/null
probe "$name" 5353 "demo"

# 3. Port 53 with the manifests' security context (the demo cluster, served
#    on :53; docker would otherwise open every port to non-root users).
step "serve on :53 as uid 65532 with only NET_BIND_SERVICE, no_new_privs, read-only root"
docker run -d --name "$name-53" --user 65532:65532 --cap-drop ALL --cap-add NET_BIND_SERVICE \
    --security-opt no-new-privileges --read-only --tmpfs /tmp \
    --sysctl net.ipv4.ip_unprivileged_port_start=1024 \
    "$image" serve --port 53 --workers 1 >/dev/null
probe "$name-53" 53 ":53 as uid 65532"

echo "ok: $image"
