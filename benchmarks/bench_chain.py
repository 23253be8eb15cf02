#!/usr/bin/env python3
"""The C engine's cost per query for a Corefile's stage chain, in process (no sockets).

Each Corefile's plan, engine configuration and compiled tables are built as the
coordinator builds them (``Coordinator.start_tables`` + its snapshot), installed
in one ``Engine`` as a worker installs them, and the same 1,000 cluster names
(``svc-N.bench.svc.cluster.local A``) are answered with ``Engine.answer_packet``
in a loop.  What is compared is the time per answer of one chain against
another's in the same process and the same run (the Python call around each
answer costs the same for both), alternating the chains per round.

    python benchmarks/bench_chain.py [--rounds 7] [--queries 300000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_server as bs  # noqa: E402

from fastdns._loop import Engine  # noqa: E402
from fastdns.coordinator.main import Coordinator  # noqa: E402
from fastdns.ipc import codec  # noqa: E402
from fastdns.worker.sync import TableSync  # noqa: E402


def engine_for(text: str, tmp: Path) -> tuple[Engine, TableSync, Coordinator]:
    path = tmp / "Corefile"
    path.write_text(text)
    coord = Coordinator(text, str(path), default_port=53)
    coord.start_tables(coord.plan, coord.econf)
    deadline = time.monotonic() + 30
    while not all(t.source.synced for t in coord.tables):
        if time.monotonic() > deadline:
            raise SystemExit("the sources did not sync")
        time.sleep(0.05)
    snap = codec.unpack_frames(codec.pack_frames({"k": "snapshot", **coord._snapshot()}))  # as sent
    e = Engine()
    e.configure(coord.econf)
    sync = TableSync(e)
    sync.apply_snapshot({**snap, "seq": 0, "gen": 0}, len(coord.econf["blocks"]))
    return e, sync, coord                # the sync holds the tables the engine points into


def per_answer_ns(e: Engine, packets: list[bytes], n: int) -> float:
    answer = e.answer_packet
    k = len(packets)
    t0 = time.perf_counter_ns()
    for i in range(n):
        answer(0, packets[i % k])
    return (time.perf_counter_ns() - t0) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--queries", type=int, default=300_000)
    ap.add_argument("--corefiles", default="kubeadm,aks")
    args = ap.parse_args()
    import dns.message
    packets = [dns.message.make_query(n + ".", "A").to_wire() for n in bs.names()]
    kinds = args.corefiles.split(",")
    engines = {}
    coords = []
    for k in kinds:
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-chain-{k}-"))
        e, sync, c = engine_for(bs.corefile(k, tmp, 53, 9), tmp)
        r = e.answer_packet(0, packets[0])
        assert r and r[3] & 0xF == 0 and r[7] == 1, f"{k}: not answered from the table"
        engines[k] = e
        coords.append((c, sync))
    res: dict[str, list[float]] = {k: [] for k in kinds}
    for k in kinds:                         # warm up (caches, the CPU's clock)
        per_answer_ns(engines[k], packets, args.queries)
    for rnd in range(args.rounds):
        for k in (kinds if rnd % 2 == 0 else kinds[::-1]):
            res[k].append(per_answer_ns(engines[k], packets, args.queries))
    from fastdns.coordinator.answers import stop_tables
    for c, _ in coords:
        stop_tables(c.tables)
    base = statistics.median(res[kinds[0]])
    for k in kinds:
        m = statistics.median(res[k])
        print(f"{k:10s} median {m:7.1f} ns/answer  (rounds {', '.join(f'{x:.0f}' for x in res[k])})"
              f"  {m - base:+6.1f} ns vs {kinds[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
