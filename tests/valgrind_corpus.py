"""Run the malformed-query corpus through the C codec under valgrind memcheck.

    PYTHONMALLOC=malloc valgrind --tool=memcheck --error-exitcode=3 \\
        python tests/valgrind_corpus.py

Each packet is copied into an exactly-sized buffer, so any read past its end
is an invalid read that memcheck reports (in fastdns/_wire*.so frames).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastdns import wire  # noqa: E402
from tests.wire_corpus import REFUSALS, corpus, valid_queries  # noqa: E402


def main() -> int:
    rng = random.Random(1)
    packets = [p for _, p in corpus()] + [p for _, p in REFUSALS] + valid_queries()
    for _ in range(3000):
        base = bytearray(rng.choice(valid_queries()))
        for _ in range(rng.randint(1, 4)):
            base[rng.randrange(len(base))] = rng.randrange(256)
        packets.append(bytes(base[: rng.randint(0, len(base))]))
    errors = parsed = 0
    for p in packets:
        buf = bytes(bytearray(p))           # a fresh allocation of exactly len(p)
        try:
            q = wire.parse_query(buf)
            parsed += 1
            wire.ResponseBuilder(q).add("answer", None, wire.A, 5, "10.0.0.1").to_wire()
        except wire.FormatError:
            errors += 1
        wire.error_response(buf)
    print(f"{len(packets)} packets: {parsed} parsed, {errors} FormatError")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
