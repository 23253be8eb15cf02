# fastdns container image: `deploy/build-image.sh` builds it and checks it.
#
# Stage 1 compiles the Cython extensions into wheels and installs them, with
# every dependency, under /install (the runtime's own paths, below a root),
# where what is never used is removed; stage 2 is the Python base plus `ip`,
# `iptables` and that tree (no compiler, no sources, no wheels).
#
# Port 53 as a non-root user: the `fastdns` command runs on a copy of the
# interpreter that carries the file capability cap_net_bind_service+ep (as
# CoreDNS's image does `setcap` on /coredns).  The pod must keep
# NET_BIND_SERVICE in its capabilities (deploy/cluster-dns.yaml: drop ALL,
# add NET_BIND_SERVICE, allowPrivilegeEscalation false): under no_new_privs
# the kernel grants a file capability only if the runtime put it in the
# process's permitted set, and refuses to exec the file (EPERM) if the
# bounding set lacks it.  Everything else (`python`, `fastdns-bench`) runs on
# the plain interpreter, so e.g. the benchmark Job can drop every capability.
# Node-local pods run as root with NET_ADMIN (interface, iptables), as
# node-cache does; `ip` and `iptables` are installed for them.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
# Python's headers come with python:3.11-slim; a Debian python3 base needs python3-dev.
RUN headers=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])') \
 && apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
        $([ -e "$headers/Python.h" ] || echo python3-dev) \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY fastdns ./fastdns
# fastdns's wheel (Cython runs here) and a wheel for every dependency, so
# the runtime stage installs offline from /wheels only.  The optional secret
# `pip-cert` is a CA bundle for pip (deploy/build-image.sh --ca-bundle, for
# egress through a TLS-inspecting proxy); it is not kept in the image.
RUN --mount=type=secret,id=pip-cert \
    if [ -s /run/secrets/pip-cert ]; then export PIP_CERT=/run/secrets/pip-cert; fi \
 && pip wheel --no-cache-dir --wheel-dir /wheels .
# Slimming, each step's saving printed in the build log (deploy/build-image.sh
# shows it; docs/deploy.md has the figures):
# * kubernetes/aio: the client's asyncio twin, as big as the client itself;
#   fastdns uses kubernetes.client and kubernetes.config, and `import
#   kubernetes` does not load it;
# * the test suites some packages ship (zmq/tests, ...);
# * debug symbols of the compiled extensions (strip --strip-debug).
# The .pyc files stay: the root is read-only in a pod, so without them every
# start would compile the kubernetes client again.
RUN pip install --no-cache-dir --no-index --find-links /wheels --root /install fastdns \
 && site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
 && test -d "/install$site/kubernetes/client" \
 && kb() { du -sk /install | cut -f1; } \
 && before=$(kb) && rm -r "/install$site/kubernetes/aio" \
 && echo "slim: kubernetes/aio: $((before - $(kb))) kB" \
 && before=$(kb) && find "/install$site" -mindepth 2 -maxdepth 2 -type d -name tests -exec rm -r {} + \
 && echo "slim: packages' tests: $((before - $(kb))) kB" \
 && before=$(kb) && find /install -name '*.so*' -type f -exec strip --strip-debug {} + \
 && echo "slim: debug symbols: $((before - $(kb))) kB; left: $(kb) kB"

FROM ${PYTHON_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 iptables libcap2-bin \
 && rm -rf /var/lib/apt/lists/* \
 && ip -V && iptables -V
COPY --from=build /install/ /
# The capability-carrying interpreter, used by the `fastdns` command only.
RUN python=$(readlink -f "$(command -v python3)") \
 && cp "$python" /usr/local/bin/python3-netbind \
 && setcap cap_net_bind_service=+ep /usr/local/bin/python3-netbind \
 && sed -i '1s|^#!.*|#!/usr/local/bin/python3-netbind|' /usr/local/bin/fastdns \
 && getcap /usr/local/bin/python3-netbind | grep -q cap_net_bind_service \
 && groupadd --system --gid 65532 fastdns \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin fastdns
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
ENV PYTHONUNBUFFERED=1
EXPOSE 53/udp 53/tcp 8080/tcp 8181/tcp 9153/tcp
ENTRYPOINT ["fastdns"]
CMD ["serve"]
