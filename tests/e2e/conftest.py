"""Fixtures for end-to-end tests in network namespaces the tests create and remove.

* ``netns_lab``: a :class:`fastdns._testing.netns.NetnsLab` (skips with the
  reason where namespaces cannot be made); closed after the test, even on
  failure: processes started with ``ns.popen`` stopped by PID, namespaces,
  veths and ``/etc/netns/NAME`` removed.
* ``nodelocal_topology``: a :class:`~fastdns._testing.netns.NodeLocalTopology`
  in that lab: "pod" namespace (resolv.conf ``nameserver 169.254.20.10``,
  search ``default.svc.cluster.local svc.cluster.local cluster.local``,
  ``options ndots:5``) routed over a veth to the "node" namespace, which
  carries 169.254.20.10 as ``--setup-interface`` does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fastdns._testing.netns import (
    NetnsLab,
    NodeLocalTopology,
    build_nodelocal_topology,
    netns_available,
)


@pytest.fixture
def netns_lab() -> Iterator[NetnsLab]:
    ok, reason = netns_available()
    if not ok:
        pytest.skip(f"network namespaces unavailable: {reason}")
    lab = NetnsLab()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def nodelocal_topology(netns_lab: NetnsLab) -> Iterator[NodeLocalTopology]:
    topo = build_nodelocal_topology(netns_lab)
    try:
        yield topo
    finally:
        topo.interface.teardown()  # the namespace goes anyway; this checks teardown works there
