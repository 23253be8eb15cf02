"""The worker's Python chain (MissHandler) with the real engine: it starts at the stage
the engine handed the query over from, and a handler that passes a query on resumes the
chain in C."""

from __future__ import annotations

import dns.message
import dns.rcode
import dns.rdatatype

from fastdns._loop import Engine
from fastdns.config import parse
from fastdns.plugins.runtime import engine_config
from fastdns.worker.miss import MissHandler


class Recorder:
    plugin = "recorder"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def resolve(self, q, packet, reply, tcp):  # noqa: ANN001, ANN201 - the resolver protocol
        self.seen.append(q.qname)
        return False                        # pass it on


def _setup() -> tuple[Engine, MissHandler, Recorder, int]:
    # template (a python stage) before whoami (C): the recorder stands at the template's stage
    plan = parse('. {\n template IN A foo.test {\n  match "^x\\\\."\n  fallthrough\n }\n'
                 ' whoami\n}\n', filename="Corefile", env={})
    econf = engine_config(plan)
    e = Engine()
    e.configure(econf)
    m = MissHandler(plan, econf, e)
    rec = Recorder()
    m.add_resolver(0, rec, at="template")
    stage = next(k for k, st in enumerate(econf["blocks"][0]["stages"]) if st["plugin"] == "template")
    return e, m, rec, stage


def test_passed_on_resumes_in_c() -> None:
    e, m, rec, stage = _setup()
    out: list[bytes] = []
    q = dns.message.make_query("y.foo.test.", "A").to_wire()
    m.handle(0, q, lambda data, src=0: out.append(data), address=("127.0.0.9", 4242), start=stage)
    assert rec.seen == ["y.foo.test."]
    r = dns.message.from_wire(out[0])
    assert r.rcode() == dns.rcode.NOERROR                # whoami, in C, after the template
    assert [rr[0].address for rr in r.additional if rr.rdtype == dns.rdatatype.A] == ["127.0.0.9"]


def test_handlers_before_the_engine_s_stage_are_not_run() -> None:
    e, m, rec, stage = _setup()
    out: list[bytes] = []
    q = dns.message.make_query("y.foo.test.", "A").to_wire()
    # the engine handed it over from a later stage (whoami's position is past the template)
    m.handle(0, q, lambda data, src=0: out.append(data), start=stage + 1)
    assert rec.seen == [] and len(out) == 1
