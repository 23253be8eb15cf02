"""``forward`` settings: upstreams (IP[:port], dns://, tls://, resolv.conf files) and options.

A resolv.conf path among the destinations is read when the Corefile is parsed
(its ``nameserver`` lines become upstreams on port 53); the path is kept in
``ForwardConf.resolv_conf`` so the server can re-read it later.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from fastdns.config.dispenser import (
    Dispenser, expect_args, no_args, parse_duration, parse_int, parse_zones,
)
from fastdns.config.lexer import Token

__all__ = ["Upstream", "ForwardConf", "parse", "parse_upstream", "read_resolv_conf", "ONCE",
           "POLICIES", "MAX_UPSTREAMS"]

ONCE = False  # several forward stanzas may share a server block (CoreDNS chains them)
POLICIES = ("random", "round_robin", "sequential")
MAX_UPSTREAMS = 15
_SCHEME_PORT = {"dns": 53, "tls": 853}
_RCODES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN",
           "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE")


@dataclass(frozen=True)
class Upstream:
    """One upstream server: ``scheme`` is ``dns`` (UDP/TCP) or ``tls`` (DoT)."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class ForwardConf:
    """What one ``forward`` directive says (CoreDNS defaults; durations in seconds)."""

    from_zone: str = "."
    to: tuple[Upstream, ...] = ()
    resolv_conf: tuple[str, ...] = ()
    except_zones: tuple[str, ...] = ()
    force_tcp: bool = False
    prefer_udp: bool = False
    expire: float = 10.0
    max_fails: int = 2
    health_check: float = 0.5
    health_check_recursion: bool = True
    health_check_domain: str = "."
    policy: str = "random"
    max_concurrent: int = 0
    tls: tuple[str, ...] = ()
    tls_servername: str | None = None
    next_rcodes: tuple[str, ...] = ()
    failover_rcodes: tuple[str, ...] = ()
    max_idle_conns: int = 0
    max_age: float = 0.0
    read_timeout: float = 2.0
    source_address: str | None = None
    use_caps_for_id: bool = False       # fastdns: 0x20 over UDP (Unbound's use-caps-for-id)


def read_resolv_conf(path: str) -> list[Upstream]:
    """The ``nameserver`` lines of a resolv.conf file as dns:// upstreams on port 53."""
    out: list[Upstream] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "nameserver":
                host = fields[1].split("%", 1)[0]
                try:
                    host = str(ipaddress.ip_address(host))
                except ValueError:
                    continue
                out.append(Upstream("dns", host, 53))
    return out


def parse_upstream(tok: Token) -> Upstream:
    """``[dns://|tls://]IP[:PORT]`` or ``[IPv6]:PORT`` → :class:`Upstream`."""
    text = tok.text
    scheme = "dns"
    if "://" in text:
        scheme, text = text.split("://", 1)
        if scheme not in _SCHEME_PORT:
            raise tok.error(f"{scheme!r} is not supported as a destination protocol in forward "
                            "(use dns:// or tls://)")
    port = _SCHEME_PORT[scheme]
    host = text
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            raise tok.error(f"invalid upstream {tok.text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise tok.error(f"invalid upstream {tok.text!r}")
            port = _port(tok, rest[1:])
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(tok, port_text)
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        raise tok.error(f"invalid upstream {tok.text!r}: not an IP address or an existing "
                        "resolv.conf file (host names are not supported)") from None
    return Upstream(scheme, host, port)


def _port(tok: Token, text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise tok.error(f"invalid port {text!r} in upstream {tok.text!r}: must be in 1..65535")
    return int(text)


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", "./", "../")) or os.sep in text and "://" not in text


def parse(d: Dispenser) -> ForwardConf:
    """Parse one ``forward FROM TO… { … }`` directive."""
    expect_args(d.name, d.args, 2, None, "forward FROM TO...")
    from_zone = parse_zones(d.args[:1])[0]
    to: list[Upstream] = []
    resolv: list[str] = []
    for tok in d.args[1:]:
        path = d.path(tok)
        if os.path.isfile(path):
            try:
                found = read_resolv_conf(path)
            except OSError as exc:
                raise tok.error(f"cannot read {tok.text}: {exc.strerror}") from None
            if not found:
                raise tok.error(f"no nameserver found in {tok.text}")
            resolv.append(path)
            to.extend(found)
        elif _looks_like_path(tok.text):
            raise tok.error(f"resolv.conf file not found: {tok.text}")
        else:
            to.append(parse_upstream(tok))
    deduped = tuple(dict.fromkeys(to))
    if len(deduped) > MAX_UPSTREAMS:
        raise d.error(f"more than {MAX_UPSTREAMS} upstreams in forward ({len(deduped)})")
    kw: dict[str, object] = {"from_zone": from_zone, "to": deduped, "resolv_conf": tuple(resolv)}
    for sub in d.block():
        name, args = sub.name.text, sub.args
        if name == "except":
            expect_args(sub.name, args, 1, None, "except IGNORED_NAMES...")
            kw["except_zones"] = tuple(kw.get("except_zones", ())) + parse_zones(args)  # type: ignore[arg-type]
        elif name in ("force_tcp", "prefer_udp", "use_caps_for_id"):
            no_args(sub)
            kw[name] = True
        elif name in ("expire", "max_age"):
            expect_args(sub.name, args, 1, 1, f"{name} DURATION")
            kw[name] = parse_duration(args[0], what=name)
        elif name == "read_timeout":
            expect_args(sub.name, args, 1, 1, "read_timeout DURATION")
            kw[name] = parse_duration(args[0], what=name, minimum=0.000_000_001)
        elif name == "max_fails":
            expect_args(sub.name, args, 1, 1, "max_fails INTEGER")
            kw[name] = parse_int(args[0], what=name, minimum=0, maximum=2**32 - 1)
        elif name in ("max_concurrent", "max_idle_conns"):
            expect_args(sub.name, args, 1, 1, f"{name} INTEGER")
            kw[name] = parse_int(args[0], what=name, minimum=0)
        elif name == "health_check":
            expect_args(sub.name, args, 1, 4, "health_check DURATION [no_rec] [domain FQDN]")
            kw["health_check"] = parse_duration(args[0], what="health_check")
            rest = list(args[1:])
            while rest:
                opt = rest.pop(0)
                if opt.text == "no_rec":
                    kw["health_check_recursion"] = False
                elif opt.text == "domain":
                    if not rest:
                        raise opt.error("health_check: 'domain' needs a domain name")
                    kw["health_check_domain"] = parse_zones([rest.pop(0)])[0]
                else:
                    raise opt.error(f"health_check: unknown option {opt.text!r}")
        elif name == "policy":
            expect_args(sub.name, args, 1, 1, "policy random|round_robin|sequential")
            if args[0].text not in POLICIES:
                raise args[0].error(f"unknown policy {args[0].text!r} (random, round_robin, sequential)")
            kw["policy"] = args[0].text
        elif name == "tls":
            expect_args(sub.name, args, 0, 3, "tls [CERT [KEY [CA]]]")
            kw["tls"] = tuple(d.path(a) for a in args)
        elif name == "tls_servername":
            expect_args(sub.name, args, 1, 1, "tls_servername NAME")
            kw["tls_servername"] = args[0].text
        elif name in ("next", "failover"):
            expect_args(sub.name, args, 1, None, f"{name} RCODE...")
            codes = []
            for a in args:
                code = a.text.upper()
                if code not in _RCODES:
                    raise a.error(f"{a.text!r} is not a valid rcode")
                if name == "failover" and code == "NOERROR":
                    raise a.error("NoError cannot be used in failover")
                codes.append(code)
            kw[f"{name}_rcodes"] = tuple(codes)
        elif name == "source_address":
            expect_args(sub.name, args, 1, 1, "source_address IP")
            try:
                kw[name] = str(ipaddress.ip_address(args[0].text))
            except ValueError:
                raise args[0].error(f"invalid IP address: {args[0].text}") from None
        else:
            raise d.unknown(sub)
    conf = ForwardConf(**kw)  # type: ignore[arg-type]
    if conf.max_age and conf.max_age < conf.expire:
        raise d.error(f"max_age ({conf.max_age:g}s) must not be less than expire ({conf.expire:g}s)")
    return conf
