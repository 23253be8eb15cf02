"""Running ``ip``/``iptables`` for the node-local plumbing, with clear errors.

Every command is an argument list (no shell), optionally prefixed with
``ip netns exec NAME`` so tests can confine all changes to a network
namespace they created.  A missing binary or a permission failure becomes a
:class:`fastdns.errors.ServerError` that names what is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from fastdns.errors import ServerError

__all__ = [
    "CAP_NET_ADMIN_BIT",
    "has_cap_net_admin",
    "is_permission_error",
    "need_cap_error",
    "netns_prefix",
    "run",
]

CAP_NET_ADMIN_BIT = 12

# Where each binary comes from, for the error message (Debian package names).
_PACKAGES = {"ip": "iproute2", "iptables": "iptables", "ip6tables": "iptables"}

_PERMISSION_MARKERS = (
    "operation not permitted",
    "permission denied",
    "you must be root",
    "must be run as root",
)


def has_cap_net_admin(status_path: str = "/proc/self/status") -> bool:
    """Whether this process has CAP_NET_ADMIN in its effective set (``CapEff`` bit 12)."""
    try:
        with open(status_path, encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN_BIT & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def need_cap_error(what: str, detail: str = "") -> ServerError:
    """The error raised when ``what`` fails for lack of privilege."""
    tail = f" ({detail.strip()})" if detail.strip() else ""
    return ServerError(f"{what} needs CAP_NET_ADMIN (run as root or grant the capability){tail}")


def is_permission_error(stderr: str) -> bool:
    """Whether a command's error output says it lacked privilege (EPERM/EACCES)."""
    low = stderr.lower()
    return any(m in low for m in _PERMISSION_MARKERS)


def netns_prefix(netns: str | None) -> list[str]:
    """``["ip", "netns", "exec", NAME]`` when ``netns`` is given, else ``[]``."""
    return ["ip", "netns", "exec", netns] if netns else []


def run(argv: Sequence[str], netns: str | None, what: str,
        timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (in ``netns`` if given) and return the result unchecked.

    Raises ServerError when the binary (or ``ip`` for the netns prefix) is
    missing, or when the command cannot be run at all.
    """
    full = netns_prefix(netns) + list(argv)
    for binary in {full[0], argv[0]}:
        if shutil.which(binary) is None:
            pkg = _PACKAGES.get(binary)
            hint = f" (Debian/Ubuntu package {pkg})" if pkg else ""
            raise ServerError(f"{what} needs the '{binary}' command, which is not installed{hint}")
    try:
        return subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServerError(f"{what}: cannot run {' '.join(full)}: {exc}") from exc
