"""The cache stores what any Python plugin after it answers (CoreDNS's cache stores what
every plugin behind it writes), not only forward's: a template's answers computed per
query (records with actions other than the owner) are then hits in C, with the cache's
TTL cap applied, per block."""

from __future__ import annotations

from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from fastdns._testing.server import ServeProcess, free_port
from tests.ops_support import scrape, value


def _ask(srv: ServeProcess, name: str, qtype: str = "A") -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, qtype), srv.host, port=srv.port, timeout=5)


def test_template_answers_are_cached(tmp_path: Path) -> None:
    mport, other = free_port(), free_port()
    (tmp_path / "Corefile").write_text(f""". {{
    prometheus 127.0.0.1:{mport}
    cache 30
    template IN TXT example.test {{
        match "^(?P<n>[a-z]+)[.]"
        answer "{{{{ .Name }}}} 60 IN TXT {{{{ .Group.n }}}}"
    }}
    template IN ANY nx.test {{
        match "^(?P<n>[a-z]+)[.]"
        rcode NXDOMAIN
        authority "nx.test. 60 IN SOA {{{{ .Group.n }}}}.nx.test. hostmaster.nx.test. 1 2 3 4 5"
    }}
}}
nocache.test:{other} {{
    template IN TXT nocache.test {{
        match "^(?P<n>[a-z]+)[.]"
        answer "{{{{ .Name }}}} 60 IN TXT {{{{ .Group.n }}}}"
    }}
}}
""")
    with ServeProcess(tmp_path / "Corefile", workers=2, probe=("probe.example.test.", "TXT")) as srv:
        base = scrape(mport)
        hits0 = value(base, "coredns_cache_hits_total")
        tmpl0 = value(base, "coredns_dns_responses_total", plugin="template")
        first = _ask(srv, "www.example.test.", "TXT")
        assert [str(rd) for rd in first.answer[0]] == ['"www"']
        assert first.answer[0].ttl == 30                    # the cache's cap, as CoreDNS
        for _ in range(6):                                  # both workers: from the cache
            r = _ask(srv, "www.example.test.", "TXT")
            assert [str(rd) for rd in r.answer[0]] == ['"www"']
            assert 0 < r.answer[0].ttl <= 30
        s = scrape(mport)
        assert value(s, "coredns_dns_responses_total", plugin="template") == tmpl0 + 1
        assert value(s, "coredns_cache_hits_total") == hits0 + 6
        assert value(s, "coredns_dns_responses_total", plugin="cache") >= 6
        # a denial is cached too
        for _ in range(3):
            assert _ask(srv, "gone.nx.test.").rcode() == dns.rcode.NXDOMAIN
        s2 = scrape(mport)
        assert value(s2, "coredns_dns_responses_total", plugin="template") == tmpl0 + 2
        assert value(s2, "coredns_cache_hits_total", type="denial") >= 2
        # a block without a cache stores nothing: its template answers every time
        for _ in range(3):
            r = dns.query.udp(dns.message.make_query("a.nocache.test.", "TXT"), srv.host,
                              port=other, timeout=5)
            assert [str(rd) for rd in r.answer[0]] == ['"a"'] and r.answer[0].ttl == 60
        s3 = scrape(mport)
        assert value(s3, "coredns_dns_responses_total", plugin="template") == tmpl0 + 5


def test_cache_is_looked_up_only_for_names_python_stages_take(tmp_path: Path) -> None:
    """AKS's shape: a template before kubernetes, a cache, forward.  The cluster's names
    are answered by the table without a cache lookup (kubernetes answers are never
    cached); the template's and forward's names are looked up."""
    from fastdns._testing.upstream import StubUpstream
    from tests.server_support import cluster_objects, write_snapshot

    write_snapshot(tmp_path / "cluster.yaml", cluster_objects())
    mport = free_port()
    with StubUpstream() as up:
        (tmp_path / "Corefile").write_text(f""". {{
    prometheus 127.0.0.1:{mport}
    kubernetes cluster.local {{
        snapshot cluster.yaml
    }}
    template ANY ANY internal.cloudapp.net {{
        rcode NXDOMAIN
    }}
    cache 30
    forward . {up.hostport}
}}
""")
        with ServeProcess(tmp_path / "Corefile", workers=1,
                          probe=("api.prod.svc.cluster.local.", "A")) as srv:
            def requests() -> float:
                return value(scrape(mport), "coredns_cache_requests_total")
            before = requests()
            for _ in range(5):
                assert [rd.address for rd in _ask(srv, "api.prod.svc.cluster.local.").answer[0]] \
                    == ["10.96.1.10"]
            assert requests() == before                 # the table, no cache lookup
            for _ in range(3):
                assert _ask(srv, "vm.internal.cloudapp.net.").rcode() == dns.rcode.NXDOMAIN
                assert [rd.address for rd in _ask(srv, "www.example.").answer[0]] == ["192.0.2.1"]
            assert requests() >= before + 6
            assert up.count("www.example.") == 1
