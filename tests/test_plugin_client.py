"""``acl`` and ``whoami`` served: the C engine sees each query's source address.

CoreDNS's own table (plugin/acl/acl_test.go, transcribed below) is run against
the engine with the source address each case names (IPv4 and IPv6, which a
loopback test could not send from); then `fastdns serve` is queried from real
sockets bound to different 127.0.0.0/8 addresses, over UDP and TCP, and whoami
must report each client's own address and port.  A handler that passes a query
on (forward's ``except``) resumes the chain in C (whoami after forward)."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from fastdns._loop import Engine
from fastdns._testing.server import ServeProcess
from fastdns._testing.upstream import StubUpstream
from fastdns.config import parse
from fastdns.plugins.runtime import engine_config

# (name, acl lines, server block zone, qname, source, qtype, outcome, EDE code)
ACL_CASES = [
    ('Blacklist 1 BLOCKED', 'acl example.org {\nblock type A net 192.168.0.0/16\n}', '.', 'www.example.org.', '192.168.0.2', 'A', 'REFUSED', 15),
    ('Blacklist 1 ALLOWED', 'acl example.org {\nblock type A net 192.168.0.0/16\n}', '.', 'www.example.org.', '192.167.0.2', 'A', 'NOERROR', None),
    ('Blacklist 2 BLOCKED', 'acl example.org {\nblock type * net 192.168.0.0/16\n}', '.', 'www.example.org.', '192.168.0.2', 'AAAA', 'REFUSED', 15),
    ('Blacklist 3 BLOCKED', 'acl example.org {\nblock type A\n}', '.', 'www.example.org.', '10.1.0.2', 'A', 'REFUSED', 15),
    ('Blacklist 3 ALLOWED', 'acl example.org {\nblock type A\n}', '.', 'www.example.org.', '10.1.0.2', 'AAAA', 'NOERROR', None),
    ('Blacklist 4 Single IP BLOCKED', 'acl example.org {\nblock type A net 192.168.1.2\n}', '.', 'www.example.org.', '192.168.1.2', 'A', 'REFUSED', 15),
    ('Blacklist 4 Single IP ALLOWED', 'acl example.org {\nblock type A net 192.168.1.2\n}', '.', 'www.example.org.', '192.168.1.3', 'A', 'NOERROR', None),
    ('Filter 1 FILTERED', 'acl example.org {\nfilter type A net 192.168.0.0/16\n}', '.', 'www.example.org.', '192.168.0.2', 'A', 'NOERROR', 17),
    ('Filter 1 ALLOWED', 'acl example.org {\nfilter type A net 192.168.0.0/16\n}', '.', 'www.example.org.', '192.167.0.2', 'A', 'NOERROR', None),
    ('Whitelist 1 ALLOWED', 'acl example.org {\nallow net 192.168.0.0/16\nblock\n}', '.', 'www.example.org.', '192.168.0.2', 'A', 'NOERROR', None),
    ('Whitelist 1 REFUSED', 'acl example.org {\nallow type * net 192.168.0.0/16\nblock\n}', '.', 'www.example.org.', '10.1.0.2', 'A', 'REFUSED', 15),
    ('Drop 1 DROPPED', 'acl example.org {\ndrop net 192.168.0.0/16\n}', '.', 'www.example.org.', '192.168.0.2', 'A', 'drop', None),
    ('Subnet-Order 1 REFUSED', 'acl example.org {\nblock net 192.168.1.0/24\ndrop net 192.168.0.0/16\n}', '.', 'www.example.org.', '192.168.1.2', 'A', 'REFUSED', 15),
    ('Subnet-Order 2 DROPPED', 'acl example.org {\ndrop net 192.168.0.0/16\nblock net 192.168.1.0/24\n}', '.', 'www.example.org.', '192.168.1.1', 'A', 'drop', None),
    ('Drop-Type 1 DROPPED', 'acl example.org {\ndrop type A\nallow net 192.168.0.0/16\n}', '.', 'www.example.org.', '192.168.1.1', 'A', 'drop', None),
    ('Drop-Type 2 ALLOWED', 'acl example.org {\ndrop type A\nallow net 192.168.0.0/16\n}', '.', 'www.example.org.', '192.168.1.1', 'AAAA', 'NOERROR', None),
    ('Fine-Grained 1 REFUSED', 'acl a.example.org {\nblock type * net 192.168.1.0/24\n}', 'example.org', 'a.example.org.', '192.168.1.2', 'A', 'REFUSED', 15),
    ('Fine-Grained 1 ALLOWED', 'acl a.example.org {\nblock net 192.168.1.0/24\n}', 'example.org', 'www.example.org.', '192.168.1.2', 'A', 'NOERROR', None),
    ('Fine-Grained 2 REFUSED', 'acl example.org {\nblock net 192.168.1.0/24\n}', 'example.org', 'a.example.org.', '192.168.1.2', 'A', 'REFUSED', 15),
    ('Fine-Grained 2 ALLOWED', 'acl {\nblock net 192.168.1.0/24\n}', 'example.org', 'a.example.com.', '192.168.1.2', 'A', 'NOERROR', None),
    ('Fine-Grained 3 REFUSED', 'acl a.example.org {\nblock net 192.168.1.0/24\n}\nacl b.example.org {\nblock type * net 192.168.2.0/24\n}', 'example.org', 'b.example.org.', '192.168.2.2', 'A', 'REFUSED', 15),
    ('Fine-Grained 3 ALLOWED', 'acl a.example.org {\nblock net 192.168.1.0/24\n}\nacl b.example.org {\nblock net 192.168.2.0/24\n}', 'example.org', 'b.example.org.', '192.168.1.2', 'A', 'NOERROR', None),
    ('Blacklist 1 BLOCKED IPv6', 'acl example.org {\nblock type A net 2001:db8:abcd:0012::0/64\n}', '.', 'www.example.org.', '2001:db8:abcd:0012::1230', 'A', 'REFUSED', 15),
    ('Blacklist 1 ALLOWED IPv6', 'acl example.org {\nblock type A net 2001:db8:abcd:0012::0/64\n}', '.', 'www.example.org.', '2001:db8:abcd:0013::0', 'A', 'NOERROR', None),
    ('Blacklist 2 BLOCKED IPv6', 'acl example.org {\nblock type A\n}', '.', 'www.example.org.', '2001:0db8:85a3:0000:0000:8a2e:0370:7334', 'A', 'REFUSED', 15),
    ('Blacklist 3 Single IP BLOCKED IPv6', 'acl example.org {\nblock type A net 2001:0db8:85a3:0000:0000:8a2e:0370:7334\n}', '.', 'www.example.org.', '2001:0db8:85a3:0000:0000:8a2e:0370:7334', 'A', 'REFUSED', 15),
    ('Blacklist 3 Single IP ALLOWED IPv6', 'acl example.org {\nblock type A net 2001:0db8:85a3:0000:0000:8a2e:0370:7334\n}', '.', 'www.example.org.', '2001:0db8:85a3:0000:0000:8a2e:0370:7335', 'A', 'NOERROR', None),
    ('Fine-Grained 1 REFUSED IPv6', 'acl a.example.org {\nblock type * net 2001:db8:abcd:0012::0/64\n}', 'example.org', 'a.example.org.', '2001:db8:abcd:0012:2019::0', 'A', 'REFUSED', 15),
    ('Fine-Grained 1 ALLOWED IPv6', 'acl a.example.org {\nblock net 2001:db8:abcd:0012::0/64\n}', 'example.org', 'www.example.org.', '2001:db8:abcd:0012:2019::0', 'A', 'NOERROR', None),
    ('Blacklist Address%ifname', 'acl example.org {\nblock type AAAA net 2001:0db8:85a3:0000:0000:8a2e:0370:7334\n}', '.', 'www.example.org.', '2001:0db8:85a3:0000:0000:8a2e:0370:7334', 'AAAA', 'REFUSED', 15),
    ('Drop 1 DROPPED IPV6', 'acl example.org {\ndrop net 2001:0db8:85a3:0000:0000:8a2e:0370:7334\n}', '.', 'www.example.org.', '2001:0db8:85a3:0000:0000:8a2e:0370:7334', 'AAAA', 'drop', None),
    ('Subnet-Order 1 REFUSED IPv6', 'acl example.org {\nblock net 2001:db8:abcd:0012:8000::/66\ndrop net 2001:db8:abcd:0012::0/64\n}', '.', 'www.example.org.', '2001:db8:abcd:0012:8000::1', 'AAAA', 'REFUSED', 15),
    ('Subnet-Order 2 DROPPED IPv6', 'acl example.org {\ndrop net 2001:db8:abcd:0012::0/64\nblock net 2001:db8:abcd:0012:8000::/66\n}', '.', 'www.example.org.', '2001:db8:abcd:0012:8000::1', 'AAAA', 'drop', None),
    ('Drop-Type 1 DROPPED IPv6', 'acl example.org {\ndrop type A\nallow net 2001:db8:85a3:0000::0/64\n}', '.', 'www.example.org.', '2001:0db8:85a3:0000:0000:8a2e:0370:7334', 'A', 'drop', None),
    ('Drop-Type 2 ALLOWED IPv6', 'acl example.org {\ndrop type A\nallow net 2001:db8:85a3:0000::0/64\n}', '.', 'www.example.org.', '2001:0db8:85a3:0000:0000:8a2e:0370:7334', 'AAAA', 'NOERROR', None),
]


def _engine(acl: str, zone: str) -> Engine:
    """The block ``zone { <acl>; whoami }`` (whoami: CoreDNS's test "next handler",
    answering NOERROR), every name routed to it as the Go test calls the plugin."""
    plan = parse(f"{zone} {{\n{acl}\nwhoami\n}}\n", filename="Corefile", env={})
    econf = engine_config(plan)
    econf["listeners"][0]["zones"].append([b"\x00", 0])
    e = Engine()
    e.configure(econf)
    return e


@pytest.mark.parametrize("name,acl,zone,qname,source,qtype,want,ede", ACL_CASES,
                         ids=[c[0] for c in ACL_CASES])
def test_acl_coredns_table(name: str, acl: str, zone: str, qname: str, source: str,
                           qtype: str, want: str, ede: int | None) -> None:
    e = _engine(acl, zone)
    q = dns.message.make_query(qname, qtype, use_edns=False)
    out = e.answer_packet(0, q.to_wire(), address=(source, 40000))
    if want == "drop":
        assert out == b""
        return
    r = dns.message.from_wire(out)
    assert dns.rcode.to_text(r.rcode()) == want
    codes = [o.code for o in r.options if isinstance(o, dns.edns.EDEOption)]
    if ede is None:
        assert not codes
        assert r.additional, "not the next plugin's answer"      # whoami answered
    else:
        assert codes == [ede] and not r.answer and r.flags & dns.flags.RA == 0


def test_acl_unknown_source_is_blocked() -> None:
    # CoreDNS blocks a request whose source it cannot parse
    e = _engine("acl {\nallow\n}", ".")
    r = dns.message.from_wire(e.answer_packet(0, dns.message.make_query("x.", "A").to_wire()))
    assert r.rcode() == dns.rcode.REFUSED


def test_acl_mapped_ipv4_matches_ipv4_nets() -> None:
    e = _engine("acl {\nblock net 10.0.0.0/8\n}", ".")
    q = dns.message.make_query("x.", "A").to_wire()
    assert dns.message.from_wire(e.answer_packet(0, q, address=("::ffff:10.1.2.3", 53))).rcode() \
        == dns.rcode.REFUSED
    assert dns.message.from_wire(e.answer_packet(0, q, address=("::ffff:11.1.2.3", 53))).rcode() \
        == dns.rcode.NOERROR


@pytest.mark.parametrize("bad", [b"\x01", b"\x00\x01\x09\xff\xff\xff\xff", b"\x00\x01\x01\xff\xff\x00\x01\x05\x00"])
def test_engine_refuses_broken_acl_rules(bad: bytes) -> None:
    e = Engine()
    with pytest.raises(ValueError):
        e.configure({"listeners": [{"zones": [[b"\x00", 0]]}],
                     "blocks": [{"stages": [{"kind": "acl", "data": bad}]}]})


# -- served ------------------------------------------------------------------

def _from(src: str, port: int, qname: str, qtype: str, tcp: bool,
          timeout: float = 3.0) -> tuple[dns.message.Message | None, int]:
    """Ask from a socket bound to ``src``; (response or None on timeout, our port)."""
    q = dns.message.make_query(qname, qtype)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.bind((src, 0))
        mine = s.getsockname()[1]
        if tcp:
            s.connect(("127.0.0.1", port))
            data = q.to_wire()
            s.sendall(struct.pack("!H", len(data)) + data)
            try:
                n = struct.unpack("!H", _read(s, 2))[0]
            except (TimeoutError, ConnectionError):
                return None, mine
            return dns.message.from_wire(_read(s, n)), mine
        s.sendto(q.to_wire(), ("127.0.0.1", port))
        try:
            return dns.message.from_wire(s.recvfrom(65535)[0]), mine
        except TimeoutError:
            return None, mine
    finally:
        s.close()


def _read(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_acl_and_whoami_served(tmp_path: Path, tcp: bool) -> None:
    (tmp_path / "Corefile").write_text(""". {
    acl {
        block type A net 127.0.0.2/32
        filter type AAAA net 127.0.0.3
        drop net 127.0.0.4
        allow net 127.0.0.0/8
        block
    }
    whoami
}
""")
    with ServeProcess(tmp_path / "Corefile", workers=2, probe=("x.", "TXT")) as srv:
        for src in ("127.0.0.1", "127.0.0.5", "127.0.0.2"):
            r, mine = _from(src, srv.port, "Who.Example.", "TXT", tcp)
            assert r is not None and r.rcode() == dns.rcode.NOERROR
            addr = [rr for rr in r.additional if rr.rdtype == dns.rdatatype.A][0]
            srv_rr = [rr for rr in r.additional if rr.rdtype == dns.rdatatype.SRV][0]
            assert str(addr.name) == "Who.Example." and addr[0].address == src
            assert str(srv_rr.name) == ("_tcp" if tcp else "_udp") + ".Who.Example."
            assert srv_rr[0].port == mine and str(srv_rr[0].target) == "."
        r, _ = _from("127.0.0.2", srv.port, "x.example.", "A", tcp)
        assert r is not None and r.rcode() == dns.rcode.REFUSED
        assert [o.code for o in r.options if isinstance(o, dns.edns.EDEOption)] == [15]
        r, _ = _from("127.0.0.3", srv.port, "x.example.", "AAAA", tcp)
        assert r is not None and r.rcode() == dns.rcode.NOERROR and not r.answer
        assert [o.code for o in r.options if isinstance(o, dns.edns.EDEOption)] == [17]
        r, _ = _from("127.0.0.4", srv.port, "x.example.", "A", tcp, timeout=1.0)
        assert r is None                                   # dropped
        # the others are still served
        r, _ = _from("127.0.0.1", srv.port, "x.example.", "A", tcp)
        assert r is not None and r.rcode() == dns.rcode.NOERROR


def test_whoami_after_forward_except_resumes_in_c(tmp_path: Path) -> None:
    # forward passes names under its except zone to the next plugin: whoami (C)
    with StubUpstream() as up:
        (tmp_path / "Corefile").write_text(
            f". {{\n forward . {up.hostport} {{\n  except skip.test\n }}\n whoami\n}}\n")
        with ServeProcess(tmp_path / "Corefile", workers=1, probe=("a.example.", "A")) as srv:
            for tcp in (False, True):
                r, mine = _from("127.0.0.7", srv.port, "x.skip.test.", "A", tcp)
                assert r is not None and r.rcode() == dns.rcode.NOERROR
                assert [rr[0].address for rr in r.additional
                        if rr.rdtype == dns.rdatatype.A] == ["127.0.0.7"]
                assert up.count("x.skip.test.") == 0
                r, _ = _from("127.0.0.7", srv.port, "www.example.", "A", tcp)
                assert [rd.address for rd in r.answer[0]] == ["192.0.2.1"]
