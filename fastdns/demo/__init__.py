"""The bundled demo served by a bare `fastdns serve`: a small cluster on 127.0.0.1:5353."""

from __future__ import annotations

from pathlib import Path

from fastdns.config.plan import Plan

PORT = 5353


def corefile_path() -> Path:
    """The demo Corefile (its snapshot, cluster.yaml, lies beside it)."""
    return Path(__file__).with_name("Corefile")


def banner(plan: Plan) -> str:
    """What `fastdns serve` prints once the demo answers."""
    port = plan.servers[0].port
    at = f"@127.0.0.1 -p {port}"
    return f"""
fastdns demo: answering for cluster.local on 127.0.0.1:{port} (UDP and TCP).
Try:
  dig {at} nginx-svc.default.svc.cluster.local            # ClusterIP service
  dig {at} web.default.svc.cluster.local                  # headless: one A per endpoint
  dig {at} web-0.web.default.svc.cluster.local            # an endpoint's hostname
  dig {at} _http._tcp.nginx-svc.default.svc.cluster.local SRV
  dig {at} docs.default.svc.cluster.local                 # ExternalName: CNAME
  dig {at} 10-244-1-10.default.pod.cluster.local          # pod name (pods insecure)
  dig {at} -x 10.96.0.50                                  # PTR of a cluster IP
  dig {at} +tcp nginx-svc.default.svc.cluster.local       # over TCP
Names outside the cluster get SERVFAIL: the demo forwards nothing. To forward
them, write a Corefile with a line such as `forward . 127.0.0.1:53` (your own
resolver) and run `fastdns serve --conf Corefile`.
Stop with Ctrl-C.
"""
