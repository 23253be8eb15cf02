"""The messages between the coordinator and its workers.

Transport: the coordinator binds a ZeroMQ PUB socket (deltas, to all workers)
and a ROUTER socket (one-to-one requests); each worker connects a SUB and a
DEALER.  Endpoints are ``ipc://`` paths in a private (0700) directory.  Every
body is one msgpack map (:mod:`fastdns.ipc.codec`); names are lower-cased
wire names (bytes), bodies are stored responses (``fastdns._wire`` bodies).

PUB → workers, one frame:

``{"k": "delta", "seq": int, "gen": int, "ops": [op, ...]}``
    Applied whole between two batches of queries, never half.  ``seq``
    increases by one per message; a worker that sees a gap asks for a
    snapshot.  ``gen`` is the configuration generation: a new one means the
    worker must ask for a snapshot (it carries the new configuration).
    ``op`` is one of

    * ``["names", table, upserts, deletes]``: ``table`` is a table id (one
      per ``table`` engine stage, :mod:`fastdns.plugins.runtime`);
      ``upserts`` is ``[[name, packed_entry], ...]`` (each replaces the whole
      name; the packed format of :mod:`fastdns.compiled`: its zone references
      stand for the table's ``shared`` bodies of the last snapshot; qtype 0 is
      the name's answer for every other type), ``deletes`` is ``[name, ...]``;
    * ``["zone", table, zone_index, nxdomain_body, nodata_body]`` (b"": an
      absent name of that zone is SERVFAIL);
    * ``["synced", table, bool]``: until true, names in the table's zones are
      answered SERVFAIL;
    * ``["health", block, [bool, ...]]``: upstream health of a block's
      ``forward`` (one flag per upstream, in Corefile order).

``{"k": "tick", "seq": int, "gen": int}``: sent about every 0.5 s; a worker
    behind ``seq`` or on another ``gen`` asks for a snapshot (a delta published
    before its subscription was connected is otherwise only noticed at the next).

``{"k": "stop"}``: finish the queries in hand and exit 0.

Worker → ROUTER (DEALER frames):

``{"k": "hello", "worker": int, "pid": int}``
    asks for a snapshot (on start, on a gap, on a new ``gen``);
``{"k": "ready", "worker": int, "seq": int, "gen": int}``
    the snapshot is applied and the sockets are bound;
``{"k": "fatal", "worker": int, "error": str}``
    the worker cannot run (e.g. an address cannot be bound); the
    coordinator stops instead of respawning it.

ROUTER → worker (``codec.pack_frames``: the msgpack head, then one frame per
out-of-band payload):

``{"k": "snapshot", "seq": int, "gen": int, "config": config, "blocks": [block, ...],
"tables": [table, ...]}``
    ``config`` is ``{"plan": bytes, "engine": dict, "filename": str, "stats":
    str}``: the coordinator's resolved plan (:func:`fastdns.ipc.codec.pack_plan`)
    and the engine configuration it computed from it
    (:func:`fastdns.plugins.runtime.engine_config`), so a worker never reads
    the Corefile, its files or the environment itself.  Each ``block`` is
    ``{"health": [...]}`` (its ``forward`` upstreams' health, if any).  Each
    ``table`` (by table id) is ``{"synced": bool, "zones": [[nxdomain_body,
    nodata_body], ...], "packed": bytes (out of band), "count": int, "shared":
    [[nodata_body, nxdomain_body], ...]}``; ``packed`` is the source's store as
    one stream of ``count`` records (``u8 klen, u32 elen, name, entry``:
    :mod:`fastdns._packed`), each entry in the packed format of
    :mod:`fastdns.compiled`, its zone references pointing into ``shared``.
    Deltas with ``seq`` ≤ the snapshot's are already in it.
"""

from __future__ import annotations

DELTA = "delta"
STOP = "stop"
TICK = "tick"
HELLO = "hello"
READY = "ready"
FATAL = "fatal"
SNAPSHOT = "snapshot"

OP_NAMES = "names"
OP_ZONE = "zone"
OP_SYNCED = "synced"
OP_HEALTH = "health"

# worker exit codes the supervisor acts on
EXIT_OK = 0
EXIT_CONFIG = 3          # cannot run with this configuration: do not respawn
EXIT_NO_COORDINATOR = 4  # the coordinator did not answer: it is gone
EXIT_STARTUP = 5         # the worker cannot start (imports, wrong package): do not respawn
