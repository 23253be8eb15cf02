# fastdns container image: `deploy/build-image.sh` builds it and checks it.
#
# Stage 1 compiles the Cython extensions into wheels; stage 2 is a slim
# Python runtime that installs only those wheels (no compiler, no sources).
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

FROM ${PYTHON_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 iptables libcap2-bin \
 && rm -rf /var/lib/apt/lists/* \
 && ip -V && iptables -V
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels fastdns
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
