#!/usr/bin/env bash
# Build the fastdns image with docker (BuildKit) or podman, then check it:
#
#   1. `fastdns check-config` on every Corefile of the manifests' ConfigMaps;
#   2. the bundled demo answers a query;
#   3. :53 served as cluster-dns.yaml runs it (its user, its capabilities,
#      no_new_privs, read-only root), with the inheritable and ambient
#      capabilities cleared as Kubernetes leaves them (podman and docker may
#      grant ambient ones), and refused without the image's file capability;
#   4. both roles end to end (deploy/check-image-e2e.py): a cluster-DNS
#      container and a node-local container (--setup-interface
#      --setup-iptables) in network namespaces the check creates, and a "pod"
#      namespace whose glibc resolver goes through them.
#
# It prints "ok: IMAGE" only once the image is built and every check passed.
#
#   deploy/build-image.sh [options] [IMAGE]          (IMAGE: fastdns:<version>)
#
# Options:
#   --engine docker|podman  default: docker if its daemon answers, else podman
#   --base auto|debootstrap|IMAGE
#                 the Python base image.  auto (default): $PYTHON_IMAGE or
#                 python:3.11-slim, pulled if not present; if it cannot be
#                 pulled, a Debian bookworm Python base is built locally with
#                 debootstrap (as `debootstrap` does; needs root).
#   --rebuild-base  build the debootstrap base again even if it exists
#   --mirror URL  Debian mirror for debootstrap and the image's apt (default:
#                 the one in this machine's apt sources, else deb.debian.org)
#   --ca-bundle FILE  CA bundle pip inside the build trusts (for a TLS-
#                 inspecting proxy); default: this machine's pip `cert` or
#                 $PIP_CERT, if set.  Given to the build as a secret: not in the image.
#   --check-only  check an existing IMAGE, build nothing
#   --no-e2e      skip check 4 (it needs root, `ip` and glibc's `getent`)
#   --allow-skip  exit 0 (not 3) when no container engine exists at all
#
# Exit status: 0 built and checked ("ok: IMAGE" on stdout); 1 a step failed
# (named on stderr); 2 bad usage; 3 no container engine ("skipped: ..." on
# stderr), unless --allow-skip.
#
# Facts of some machines it copes with, only where it finds them (podman):
# a crun that cannot run on a hybrid cgroup layout (runc is used instead);
# no CAP_SYS_RESOURCE, so podman's default ulimits cannot be set (the
# caller's own limits are used, through a CONTAINERS_CONF file); a caller in
# a cgroup of its own under cgroupfs (containers stay inside it).  Builds
# use the host network under podman and checks use none: nothing here
# creates a bridge or touches the host's iptables.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
die_usage() { echo "build-image.sh: $*" >&2; echo "usage: deploy/build-image.sh [--engine docker|podman] [--base auto|debootstrap|IMAGE] [--rebuild-base] [--mirror URL] [--ca-bundle FILE] [--check-only] [--no-e2e] [--allow-skip] [IMAGE]" >&2; exit 2; }

engine="" base="auto" rebuild_base=0 mirror="" ca_bundle="" check_only=0 e2e=1 allow_skip=0 image=""
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --engine|--base|--mirror|--ca-bundle)
            [ $# -ge 2 ] && [ -n "$2" ] || die_usage "$1 needs a value"
            case "$1" in
                --engine) engine=$2 ;;
                --base) base=$2 ;;
                --mirror) mirror=$2 ;;
                --ca-bundle) ca_bundle=$2 ;;
            esac
            shift 2 ;;
        --engine=*|--base=*|--mirror=*|--ca-bundle=*)
            set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
        --rebuild-base) rebuild_base=1; shift ;;
        --check-only) check_only=1; shift ;;
        --no-e2e) e2e=0; shift ;;
        --allow-skip) allow_skip=1; shift ;;
        --) shift; [ $# -le 1 ] || die_usage "one IMAGE at most"; image=${1:-}; shift $# ;;
        -*) die_usage "unknown option '$1'" ;;
        *) [ -z "$image" ] || die_usage "one IMAGE at most (got '$image' and '$1')"; image=$1; shift ;;
    esac
done
case "$engine" in ""|docker|podman) ;; *) die_usage "--engine must be docker or podman, not '$engine'" ;; esac
case "$mirror" in ""|http://*|https://*) ;; *) die_usage "--mirror must be an http:// or https:// URL, not '$mirror'" ;; esac
if [ -n "$ca_bundle" ] && ! [ -f "$ca_bundle" -a -r "$ca_bundle" ]; then
    die_usage "--ca-bundle $ca_bundle: not a readable file"
fi
version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' fastdns/_version.py)
image=${image:-fastdns:${version}}
[[ "$image" =~ ^[a-z0-9][a-zA-Z0-9._/:@-]*$ ]] || die_usage "'$image' is not an image name"

t_start=$(date +%s)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fastdns-image.XXXXXX")
chmod 755 "$tmp"          # mounted into containers that run as uid 65532
name=fastdns-check-$$
rootfs=""
current="start"
step() { current=$*; echo "+ $*" >&2; }
fail() { echo "build-image.sh: FAILED: $current: $*" >&2; exit 1; }
skip() {
    echo "skipped: $*" >&2
    [ "$allow_skip" = 1 ] && exit 0
    echo "build-image.sh: nothing was built or checked (--allow-skip makes this exit 0)" >&2
    exit 3
}

cleanup() {
    local rc=$?
    if [ -n "${eng_cmd:-}" ]; then
        "${eng[@]}" rm -f "$name-demo" "$name-53" "$name-53-plain" >/dev/null 2>&1 || true
    fi
    if [ -n "$rootfs" ] && [ -d "$rootfs" ]; then
        # debootstrap mounts /proc and /sys in the target; never delete through them
        awk -v r="$rootfs" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r |
            while read -r m; do umount -l "$m" 2>/dev/null || true; done
        rm -rf --one-file-system "$rootfs"
    fi
    rm -rf "$tmp"
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ] && [ "$rc" -ne 3 ] && [ "$current" != start ]; then
        echo "build-image.sh: failed (exit $rc) in: $current" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# -- the engine ---------------------------------------------------------------------------
docker_reason="" podman_reason=""
docker_works() {
    command -v docker >/dev/null 2>&1 || { docker_reason="not installed"; return 1; }
    if docker --version 2>/dev/null | grep -qi podman; then
        docker_reason="the docker command is podman's"; return 1
    fi
    local out
    if ! out=$(timeout 20 docker info --format '{{.ServerVersion}}' 2>&1); then
        docker_reason="no daemon answers ($(echo "$out" | tail -n 1))"; return 1
    fi
}
podman_works() {
    command -v podman >/dev/null 2>&1 || { podman_reason="not installed"; return 1; }
    local out
    if ! out=$(timeout 60 podman info --format '{{.Version.Version}}' 2>&1); then
        podman_reason="podman info failed ($(echo "$out" | tail -n 1))"; return 1
    fi
}
if [ -z "$engine" ]; then
    if docker_works; then engine=docker
    elif podman_works; then engine=podman
    elif ! command -v docker >/dev/null 2>&1 && ! command -v podman >/dev/null 2>&1; then
        skip "no container engine (neither docker nor podman is installed)"
    elif [ "$podman_reason" = "not installed" ]; then
        skip "no container engine (docker: $docker_reason; podman: not installed)"
    else
        fail "no container engine works (docker: $docker_reason; podman: $podman_reason)"
    fi
elif [ "$engine" = docker ]; then
    docker_works || fail "--engine docker: $docker_reason"
else
    podman_works || fail "--engine podman: $podman_reason"
fi
eng=("$engine")
eng_cmd=$engine
run_net=(--network=none)       # every check container: no network of the engine's
build_flags=()
if [ "$engine" = docker ]; then
    export DOCKER_BUILDKIT=1    # RUN --mount (the runtime stage installs from the build stage's wheels)
else
    build_flags+=(--network=host)   # the build needs egress only: no bridge, no iptables rules
    quirks=()
    conf_lines=()
    runtime=$(podman info --format '{{.Host.OCIRuntime.Name}}' 2>/dev/null || true)
    if [ "$runtime" = crun ] && grep -q ' /sys/fs/cgroup/unified cgroup2 ' /proc/mounts \
            && command -v runc >/dev/null 2>&1; then
        conf_lines+=("[engine]" "runtime = \"runc\"")
        quirks+=("runc instead of crun (hybrid cgroup layout)")
    fi
    capeff=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
    if [ -n "$capeff" ] && [ $(( 0x$capeff >> 24 & 1 )) = 0 ]; then   # CAP_SYS_RESOURCE
        nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
        [ "$nofile" = unlimited ] && nofile=1048576
        # podman itself runs with at most 32768 processes; 4096 is plenty for these checks
        if [ "$nproc" = unlimited ] || [ "$nproc" -gt 4096 ]; then nproc=4096; fi
        conf_lines=("[containers]" "default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]" "${conf_lines[@]}")
        quirks+=("ulimits nofile=$nofile nproc=$nproc (no CAP_SYS_RESOURCE)")
    fi
    if [ ${#conf_lines[@]} -gt 0 ]; then
        if [ -n "${CONTAINERS_CONF:-}" ]; then
            echo "build-image.sh: CONTAINERS_CONF is set ($CONTAINERS_CONF): left alone, so not applied: ${quirks[*]}" >&2
        else
            printf '%s\n' "${conf_lines[@]}" > "$tmp/containers.conf"
            export CONTAINERS_CONF=$tmp/containers.conf
            echo "build-image.sh: podman on this machine: ${quirks[*]}" >&2
        fi
    fi
    manager=$(podman info --format '{{.Host.CgroupManager}}' 2>/dev/null || true)
    if [ "$manager" = cgroupfs ] && grep -qv -e ':/$' -e '^0::/$' /proc/self/cgroup; then
        # runc resolves a relative parent from conmon's cgroup, which stays ours
        run_net+=(--cgroups=no-conmon --cgroup-parent=fastdns-check)
        echo "build-image.sh: podman on this machine: containers stay in this shell's cgroups" >&2
    fi
fi
step "engine: $engine ($("${eng[@]}" --version 2>/dev/null | head -n 1))"

image_exists() { "${eng[@]}" image inspect "$1" >/dev/null 2>&1; }

# -- the base image -------------------------------------------------------------------------
# "URI SUITE" for every deb source of this machine (one-line and deb822 formats)
apt_sources() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] && awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } print $i, $(i+1) }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] && awk '
            function flush() { if (deb && uris != "") { n = split(uris, u, " "); m = split(suites, s, " ")
                                   for (a = 1; a <= n; a++) for (b = 1; b <= m; b++) print u[a], s[b] }
                               deb = 0; uris = ""; suites = "" }
            /^[ \t]*$/ { flush(); next }
            /^Types:/ { deb = ($0 ~ /[ \t]deb([ \t]|$)/) }
            /^URIs:/ { sub(/^URIs:[ \t]*/, ""); uris = $0 }
            /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
            END { flush() }' "$f"
    done
}
security_mirror=""
pick_mirrors() {
    local sources
    sources=$(apt_sources 2>/dev/null || true)
    if [ -z "$mirror" ]; then
        mirror=$(echo "$sources" | awk '$2 == "bookworm" {print $1; exit}')
        mirror=${mirror:-http://deb.debian.org/debian}
    fi
    security_mirror=$(echo "$sources" | awk '$2 == "bookworm-security" {print $1; exit}')
    if [ -z "$security_mirror" ] && [[ "$mirror" =~ ^https?://deb\.debian\.org/debian/?$ ]]; then
        security_mirror=${mirror%/}-security
    fi
    mirror=${mirror%/}
}

debootstrap_base() {
    local out=$1
    [ "$(id -u)" = 0 ] || fail "debootstrap needs root (or give --base IMAGE)"
    command -v debootstrap >/dev/null 2>&1 || fail "debootstrap is not installed (apt-get install debootstrap)"
    pick_mirrors
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg keyopt=()
    if [ -r "$keyring" ]; then keyopt=(--keyring="$keyring")
    else fail "no Debian archive keyring ($keyring; apt-get install debian-archive-keyring)"; fi
    step "debootstrap: Debian bookworm + python3 from $mirror -> $out"
    rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/fastdns-base.XXXXXX")
    local t0=$SECONDS
    if ! debootstrap --variant=minbase "${keyopt[@]}" \
            --include=python3,python3-pip,ca-certificates,netbase \
            bookworm "$rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
        tail -n 20 "$tmp/debootstrap.log" >&2
        fail "debootstrap failed (log above)"
    fi
    # What python:3.11-slim (debian:bookworm-slim underneath) has that debootstrap does not:
    # pip may install into the system Python, apt keeps no caches, no docs, man pages or locales.
    cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' > "$rootfs/etc/apt/apt.conf.d/docker-no-languages"
    echo 'Acquire::GzipIndexes "true";' > "$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
    echo 'Apt::AutoRemove::SuggestsImportant "false";' > "$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
    mkdir -p "$rootfs/etc/dpkg/dpkg.cfg.d"
    cat > "$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/lib/python3*/EXTERNALLY-MANAGED
EOF
    rm -f "$rootfs/etc/apt/sources.list"
    {
        printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror"
        if [ -n "$security_mirror" ]; then
            printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$security_mirror"
        fi
    } > "$rootfs/etc/apt/sources.list.d/debian.sources"
    # debootstrap installs the release as it was; python:3.11-slim has the security updates
    step "debootstrap base: apt-get upgrade (bookworm-updates, bookworm-security)"
    mount -t proc proc "$rootfs/proc"
    if ! chroot "$rootfs" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -y -qq upgrade' \
            >>"$tmp/debootstrap.log" 2>&1; then
        umount "$rootfs/proc"; tail -n 20 "$tmp/debootstrap.log" >&2
        fail "apt-get upgrade in the debootstrapped root failed (log above)"
    fi
    umount "$rootfs/proc"
    # pip may install into this Python (dpkg above keeps an upgraded python3.11 from putting
    # the marker back)
    rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/lintian/*
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
    # debootstrap copied this machine's resolv.conf and hostname: the engine provides its own
    rm -f "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
           "$rootfs"/var/cache/apt/archives/partial/* "$rootfs"/var/cache/debconf/*-old "$rootfs"/tmp/* \
           "$rootfs"/var/log/apt/* "$rootfs"/var/log/*.log "$rootfs"/root/.cache
    awk -v r="$rootfs" 'index($2, r) == 1 {print $2}' /proc/mounts | grep -q . &&
        fail "debootstrap left mounts under $rootfs"
    tar --numeric-owner -C "$rootfs" -c . | "${eng[@]}" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$out" >/dev/null \
        || fail "$engine import of the debootstrapped root failed"
    rm -rf --one-file-system "$rootfs"; rootfs=""
    echo "build-image.sh: base $out built in $((SECONDS - t0)) s" >&2
}

debootstrap_image=fastdns-base:python3.11-bookworm
pull() {   # pull IMAGE: 0 if it is here afterwards
    image_exists "$1" && return 0
    step "$engine pull $1"
    local out
    if ! out=$(timeout 300 "${eng[@]}" pull "$1" 2>&1); then
        pull_error=$(echo "$out" | tail -n 1)
        return 1
    fi
}
resolve_base() {
    local wanted
    case "$base" in
        debootstrap)
            base_image=$debootstrap_image
            if [ "$rebuild_base" = 1 ] || ! image_exists "$base_image"; then debootstrap_base "$base_image"
            else echo "build-image.sh: using the debootstrapped base $base_image built before (--rebuild-base to redo)" >&2; fi ;;
        auto)
            wanted=${PYTHON_IMAGE:-python:3.11-slim}
            if pull "$wanted"; then base_image=$wanted
            else
                echo "build-image.sh: cannot pull $wanted ($pull_error); building a base with debootstrap" >&2
                base=debootstrap; resolve_base
            fi ;;
        *)
            pull "$base" || fail "base image $base is not here and cannot be pulled ($pull_error)"
            base_image=$base ;;
    esac
}

# -- the pip CA bundle ---------------------------------------------------------------------
find_ca_bundle() {
    [ -n "$ca_bundle" ] && return 0
    local c="${PIP_CERT:-}"
    if [ -z "$c" ] && command -v python3 >/dev/null 2>&1; then
        c=$(python3 -m pip config get global.cert 2>/dev/null || true)
    fi
    if [ -n "$c" ] && [ -f "$c" ]; then ca_bundle=$c; fi
}

# -- build ------------------------------------------------------------------------------------
if [ "$check_only" = 0 ]; then
    resolve_base
    find_ca_bundle
    secret=()
    if [ -n "$ca_bundle" ]; then
        secret=(--secret "id=pip-cert,src=$ca_bundle")
        echo "build-image.sh: pip in the build trusts $ca_bundle (this machine's pip cert)" >&2
    fi
    step "$engine build -t $image (base $base_image)"
    t_build=$SECONDS
    "${eng[@]}" build "${build_flags[@]}" "${secret[@]}" --build-arg "PYTHON_IMAGE=$base_image" \
        -t "$image" . >&2 || fail "$engine build failed (output above)"
    echo "build-image.sh: built $image in $((SECONDS - t_build)) s" >&2
else
    image_exists "$image" || fail "--check-only: no image $image"
fi
size=$("${eng[@]}" image inspect --format '{{.Size}}' "$image")

# Our own resolv.conf for every container that parses `forward . /etc/resolv.conf`
# (never the machine's): a loopback address that nothing here queries.
printf 'nameserver 127.0.0.1\n' > "$tmp/resolv.conf"
chmod 644 "$tmp/resolv.conf"
vol_resolv=(-v "$tmp/resolv.conf:/etc/resolv.conf:ro")

# 1. Every Corefile in the manifests' ConfigMaps passes check-config in the
#    image (node-local's after filling its placeholders as node-cache would).
step "check 1/4: check-config on every ConfigMap Corefile of deploy/*.yaml, inside $image"
"${eng[@]}" run --rm -i "${run_net[@]}" "${vol_resolv[@]}" -v "$PWD/deploy:/deploy:ro" \
    --entrypoint python3 "$image" - <<'PY' >&2 || fail "check-config"
import pathlib, subprocess, sys, tempfile, yaml
from fastdns.config.nodelocal import fill_nodelocal_placeholders
bad = n = 0
for path in sorted(pathlib.Path("/deploy").glob("*.yaml")):
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or doc.get("kind") != "ConfigMap":
            continue
        for key, text in (doc.get("data") or {}).items():
            if not key.startswith("Corefile"):
                continue
            n += 1
            if "__PILLAR__" in text:
                text = fill_nodelocal_placeholders(text, "169.254.20.10", "10.96.0.10",
                                                   "10.96.0.11", None, "cluster.local")
            with tempfile.NamedTemporaryFile("w", suffix=".Corefile", delete=False) as f:
                f.write(text)
            r = subprocess.run(["fastdns", "check-config", f.name], capture_output=True, text=True)
            print(f"  {path.name}: {doc['metadata']['name']}/{key}: exit {r.returncode}")
            if r.returncode:
                print(r.stdout + r.stderr, file=sys.stderr)
                bad += 1
if n == 0:
    sys.exit("no Corefile found in /deploy/*.yaml ConfigMaps")
sys.exit(1 if bad else 0)
PY

# probe CONTAINER PORT LABEL: ask for the demo's nginx-svc inside the container until it answers
probe() {
    "${eng[@]}" exec -i "$1" python3 - "$2" "$3" <<'PY'
import sys, time, dns.message, dns.query, dns.rcode
port, label = int(sys.argv[1]), sys.argv[2]
q = dns.message.make_query("nginx-svc.default.svc.cluster.local.", "A")
for _ in range(150):
    try:
        r = dns.query.udp(q, "127.0.0.1", port=port, timeout=0.5)
        break
    except Exception:
        time.sleep(0.2)
else:
    raise SystemExit(f"{label}: no answer on 127.0.0.1:{port}")
assert r.rcode() == dns.rcode.NOERROR and r.answer, r
print(f"  {label}:", r.answer[0])
PY
}
logs_of() { echo "--- $engine logs $1:" >&2; "${eng[@]}" logs "$1" 2>&1 | tail -n 30 >&2 || true; }

# 2. The bundled demo answers (queried from inside the container: it listens
#    on the container's loopback).
step "check 2/4: demo: fastdns serve, a query for nginx-svc.default.svc.cluster.local"
"${eng[@]}" run -d --name "$name-demo" "${run_net[@]}" "$image" serve >/dev/null || fail "cannot start the demo"
probe "$name-demo" 5353 "demo" >&2 || { logs_of "$name-demo"; fail "the demo did not answer"; }
"${eng[@]}" rm -f "$name-demo" >/dev/null

# 3. Port 53 as cluster-dns.yaml's Deployment runs it: its user and group,
#    its capabilities, no_new_privs for allowPrivilegeEscalation false, a
#    read-only root with /tmp as its emptyDir.  Unprivileged ports start at
#    1024 (engines open them all by default) and setpriv clears the
#    inheritable and ambient capabilities, which Kubernetes never sets
#    (podman does): what is left is the bounding/permitted set, so only the
#    image's file capability can carry NET_BIND_SERVICE across exec.
step "check 3/4: :53 with cluster-dns.yaml's securityContext, ambient capabilities cleared"
sec=$("${eng[@]}" run --rm -i "${run_net[@]}" -v "$PWD/deploy:/deploy:ro" --entrypoint python3 "$image" - <<'PY'
import yaml
for d in yaml.safe_load_all(open("/deploy/cluster-dns.yaml")):
    if d and d["kind"] == "Deployment":
        spec = d["spec"]["template"]["spec"]
        c = spec["containers"][0]
        ctx = {**spec.get("securityContext", {}), **c.get("securityContext", {})}
        caps = ctx.get("capabilities", {})
        out = [f"--user={ctx['runAsUser']}:{ctx['runAsGroup']}"]
        out += [f"--cap-drop={x}" for x in caps.get("drop", [])]
        out += [f"--cap-add={x}" for x in caps.get("add", [])]
        if ctx.get("allowPrivilegeEscalation") is False:
            out.append("--security-opt=no-new-privileges")
        if ctx.get("readOnlyRootFilesystem"):
            out.append("--read-only")
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        out += [f"--tmpfs={m['mountPath']}" for m in c.get("volumeMounts", [])
                if "emptyDir" in vols.get(m["name"], {})]
        print("\n".join(out))
        break
else:
    raise SystemExit("cluster-dns.yaml has no Deployment")
PY
) || fail "reading cluster-dns.yaml's securityContext"
mapfile -t secctx <<<"$sec"
echo "  $(printf '%s ' "${secctx[@]}")" >&2
cap_run=("${eng[@]}" run "${run_net[@]}" "${secctx[@]}" --sysctl net.ipv4.ip_unprivileged_port_start=1024
         --entrypoint setpriv)
"${cap_run[@]}" -d --name "$name-53" "$image" --inh-caps=-all --ambient-caps=-all -- \
    fastdns serve --port 53 --workers 1 >/dev/null || fail "cannot start the :53 container"
probe "$name-53" 53 ":53 as $(printf '%s\n' "${secctx[@]}" | sed -n 's/^--user=//p')" >&2 \
    || { logs_of "$name-53"; fail ":53 was not served with the manifest's securityContext"; }
"${eng[@]}" exec -i "$name-53" python3 - <<'PY' >&2 || fail "the :53 server has other capabilities than the manifest's"
s = dict(l.split(":\t", 1) for l in open("/proc/1/status").read().splitlines() if ":\t" in l)
caps = {k: int(s[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd")}
nnp = s["NoNewPrivs"].strip()
print("  the server (pid 1): " + " ".join(f"{k}={v:#x}" for k, v in caps.items()) + f" NoNewPrivs={nnp}")
nbs = 1 << 10    # CAP_NET_BIND_SERVICE
assert caps["CapInh"] == 0 and caps["CapAmb"] == 0, caps
assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"] == nbs, caps
assert nnp == "1", nnp
PY
"${eng[@]}" rm -f "$name-53" >/dev/null
# ... and the same container without the file capability (the plain interpreter) cannot bind it
out=$("${cap_run[@]}" --rm "$image" --inh-caps=-all --ambient-caps=-all -- \
      python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 53))' 2>&1) \
    && fail "the plain interpreter bound :53 without the file capability: the check proves nothing here"
echo "$out" | grep -q "Permission denied" || fail "binding :53 without the file capability: unexpected: $out"
echo "  without the file capability: Permission denied (as in a pod)" >&2

# 4. Both roles end to end from the image.
if [ "$e2e" = 1 ]; then
    step "check 4/4: both roles end to end in network namespaces (deploy/check-image-e2e.py)"
    [ "$(id -u)" = 0 ] || fail "the end-to-end check needs root (network namespaces); --no-e2e skips it"
    for t in python3 ip getent; do
        command -v "$t" >/dev/null 2>&1 || fail "the end-to-end check needs '$t' on this machine; --no-e2e skips it"
    done
    e2e_args=(--engine "$engine" --image "$image")
    for a in "${run_net[@]}"; do [ "$a" = --network=none ] || e2e_args+=("--run-arg=$a"); done
    python3 deploy/check-image-e2e.py "${e2e_args[@]}" >&2 || fail "end to end (output above)"
else
    echo "build-image.sh: check 4/4 (end to end) not run: --no-e2e" >&2
fi

echo "build-image.sh: $image: $(( size / 1000000 )) MB; $(( $(date +%s) - t_start )) s in all" >&2
if [ "$e2e" = 1 ]; then echo "ok: $image"; else echo "ok: $image (end-to-end check not run)"; fi
