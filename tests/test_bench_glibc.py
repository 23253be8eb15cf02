"""The k8s-pod scenario sends exactly what glibc sends for the same resolv.conf.

glibc's resolver reads /etc/resolv.conf only and talks to port 53, so the
reference run happens in private mount and network namespaces (``unshare
-mn``): our resolv.conf and nsswitch.conf are bind-mounted over /etc, a
scripted server listens on 127.0.0.1:53 of the new namespace's loopback, and
``getent ahosts NAME`` (getaddrinfo, AF_UNSPEC: A and AAAA in parallel) runs
there.  The same server rules then answer fastdns-bench's engine on the host
loopback, and both query sequences must be equal.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from fastdns.bench.load import LoadOptions, run_load
from fastdns.bench.queries import Workload
from fastdns.bench.scenario import add_lookup, search_list
from fastdns.bench.testserver import ScriptedServer

POD_NS = "ns1"
SEARCH = search_list(POD_NS)
POSITIVE = {
    "svc-a.ns1.svc.cluster.local.",      # short name, found at the first suffix
    "svc-b.ns2.svc.cluster.local.",      # svc.ns, found at the second suffix
    "www.example.com.",                  # external: three NXDOMAINs, then as is
    "a.b.c.d.e.f.",                      # 5 dots: as is first
    "x.y.z.w.v.u.cluster.local.",        # 5 dots, not as is: found at the last suffix
    "fq.example.org.",                   # trailing dot
}
NAMES = ["svc-a", "svc-b.ns2", "svc-b.ns2.svc.cluster.local", "www.example.com",
         "missing.nowhere", "a.b.c.d.e.f", "x.y.z.w.v.u", "fq.example.org."]

SCRIPT = textwrap.dedent("""
    import json, subprocess, sys
    from fastdns.bench.testserver import ScriptedServer
    resolv, nss, name, positive = sys.argv[1], sys.argv[2], sys.argv[3], set(json.loads(sys.argv[4]))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["mount", "--bind", resolv, "/etc/resolv.conf"], check=True)
    subprocess.run(["mount", "--bind", nss, "/etc/nsswitch.conf"], check=True)
    rule = lambda qn, qt: (0, qt == "A") if qn.lower() in positive else (3, False)
    with ScriptedServer(rule, host="127.0.0.1", port=53) as srv:
        subprocess.run(["getent", "ahosts", name], stdout=subprocess.DEVNULL, timeout=20)
    print(json.dumps(srv.log))
""")


def _rule(qn: str, qt: str) -> tuple[int, bool]:
    return (0, qt == "A") if qn.lower() in POSITIVE else (3, False)


@pytest.fixture(scope="module")
def netns_ok():
    if not shutil.which("getent") or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs getent, unshare and ip (iproute2)")
    r = subprocess.run(["unshare", "-mn", "sh", "-c", "ip link set lo up && mount -t tmpfs none /mnt"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot create mount+network namespaces here (needs root): {r.stderr.strip()}")


def glibc_sequence(name: str, tmp_path) -> list[tuple[str, str]]:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver 127.0.0.1\nsearch {' '.join(SEARCH)}\noptions ndots:5 timeout:2 attempts:1\n")
    nss = tmp_path / "nsswitch.conf"
    nss.write_text("hosts: dns\n")
    script = tmp_path / "glibc_capture.py"
    script.write_text(SCRIPT)
    r = subprocess.run(["unshare", "-mn", sys.executable, str(script), str(resolv), str(nss), name,
                        json.dumps(sorted(POSITIVE))], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [tuple(x) for x in json.loads(r.stdout)]


def bench_sequence(name: str) -> tuple[list[tuple[str, str]], int]:
    w = Workload()
    add_lookup(w, name, SEARCH, ndots=5)
    with ScriptedServer(_rule) as srv:
        r = run_load(w, LoadOptions(server=("127.0.0.1", srv.port), duration=0.15, concurrency=1,
                                    timeout=5.0, probe=False))
    return list(srv.log), r.counters["lookups_ok"] + r.counters["lookups_negative"]


@pytest.mark.parametrize("name", NAMES)
def test_k8s_pod_lookup_sends_what_glibc_sends(name, tmp_path, netns_ok):
    want = glibc_sequence(name, tmp_path)
    assert want, "getent sent nothing: is the resolver using our resolv.conf?"
    got, lookups = bench_sequence(name)
    assert lookups >= 1
    # the engine repeats the lookup for the whole duration: a whole number of
    # glibc sequences, each identical (a last, unfinished one may be cut short)
    n = len(want)
    assert len(got) >= n
    for k in range(0, len(got) - n + 1, n):
        assert got[k:k + n] == want, f"lookup #{k // n + 1} of {name!r} differs from glibc"
    assert got[len(got) // n * n:] == want[:len(got) % n]
