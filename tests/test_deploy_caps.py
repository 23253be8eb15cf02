"""The image's way to port 53 without root, checked on this kernel.

The Dockerfile puts the file capability ``cap_net_bind_service=+ep`` on the
interpreter the ``fastdns`` command runs on, and the manifests run it as uid
65532 with ``drop: [ALL]``, ``add: [NET_BIND_SERVICE]`` and
``allowPrivilegeEscalation: false`` (no_new_privs).  Here a launcher does
what runc does with such a spec (bounding set, keep-caps, uid change,
permitted/effective sets, no_new_privs, exec) inside a private network
namespace, and a small C program tries to bind 127.0.0.1:53 there:

* capability added + file capability → binds (the manifests' case);
* capability added, no file capability → EACCES (why the image needs setcap);
* every capability dropped + file capability → exec fails with EPERM (why the
  benchmark Job, which drops ALL, runs on the plain interpreter).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("setcap", "unshare", "ip", "cc")),
    reason="needs root, setcap, unshare, ip and a C compiler")

BIND53_C = r"""
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
int main(void) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(53);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        printf("bind: %s uid=%d\n", strerror(errno), (int)getuid());
        return 2;
    }
    printf("bound uid=%d\n", (int)getuid());
    return 0;
}
"""

# Runs as root in the private network namespace, then becomes the container.
LAUNCHER = r"""
import ctypes, os, subprocess, sys
keep = {int(c) for c in sys.argv[1].split(",") if c}
binary = sys.argv[2]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
start = int(open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read())
if start <= 53:
    print(f"unprivileged ports start at {start}"); sys.exit(3)
libc = ctypes.CDLL(None, use_errno=True)
PR_CAPBSET_DROP, PR_SET_KEEPCAPS, PR_SET_NO_NEW_PRIVS = 24, 8, 38
last = int(open("/proc/sys/kernel/cap_last_cap").read())
for cap in range(last + 1):                      # the bounding set: only `keep`
    if cap not in keep and libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP")
libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
os.setgroups([]); os.setresgid(65532, 65532, 65532); os.setresuid(65532, 65532, 65532)
class Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
class Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]
mask = sum(1 << c for c in keep)
data = (Data * 2)(Data(mask, mask, 0), Data(0, 0, 0))
if libc.capset(ctypes.byref(Header(0x20080522, 0)), data) != 0:
    raise OSError(ctypes.get_errno(), "capset")
if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
    raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
sys.stdout.flush()
try:
    os.execv(binary, [binary])
except OSError as e:
    print(f"exec: {os.strerror(e.errno)}"); sys.exit(4)
"""

CAP_NET_BIND_SERVICE = 10


@pytest.fixture(scope="module")
def binaries() -> Iterator[tuple[Path, Path]]:
    """(with file capability, without), in a directory uid 65532 can read."""
    d = Path(tempfile.mkdtemp(prefix="fastdns-caps-"))
    try:
        d.chmod(0o755)
        src = d / "bind53.c"
        src.write_text(BIND53_C)
        plain = d / "bind53"
        subprocess.run(["cc", "-O2", "-o", str(plain), str(src)], check=True)
        capped = d / "bind53-netbind"
        shutil.copy2(plain, capped)
        subprocess.run(["setcap", "cap_net_bind_service=+ep", str(capped)], check=True)
        (d / "launcher.py").write_text(LAUNCHER)
        yield capped, plain
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_as_container(binary: Path, keep: set[int]) -> tuple[int, str]:
    launcher = binary.parent / "launcher.py"
    r = subprocess.run(["unshare", "--net", "--", sys.executable, str(launcher),
                        ",".join(map(str, sorted(keep))), str(binary)],
                       check=False, capture_output=True, text=True, timeout=30)
    if r.returncode == 3:
        pytest.skip(r.stdout.strip())
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, r.stdout.strip()


def test_added_capability_and_file_capability_bind_53(binaries: tuple[Path, Path]) -> None:
    capped, _ = binaries
    assert run_as_container(capped, {CAP_NET_BIND_SERVICE}) == (0, "bound uid=65532")


def test_without_file_capability_the_added_capability_is_lost_at_exec(
        binaries: tuple[Path, Path]) -> None:
    _, plain = binaries
    assert run_as_container(plain, {CAP_NET_BIND_SERVICE}) == (
        2, "bind: Permission denied uid=65532")


def test_file_capability_outside_the_bounding_set_refuses_exec(binaries: tuple[Path, Path]) -> None:
    capped, plain = binaries
    assert run_as_container(capped, set()) == (4, "exec: Operation not permitted")
    # The plain binary still runs (and cannot bind :53): the bench Job's case.
    assert run_as_container(plain, set()) == (2, "bind: Permission denied uid=65532")
