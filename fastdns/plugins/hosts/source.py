"""The ``hosts`` plugin's source: a hosts file plus inline entries, compiled into a table.

What CoreDNS's *hosts* answers, as table entries (``fastdns.compiled``):

* a name with addresses: A and AAAA answers (authoritative, the plugin's TTL);
  any other type, or the family it lacks: NOERROR with no records (CoreDNS's
  ``otherRecordsExist``);
* ``*.<parent>`` names are wildcards: they answer names one label below
  ``<parent>`` that have no entry of their own;
* unless ``no_reverse``: the reverse name of each address answers PTR with
  every name it was given (names kept in file-then-inline order).

The engine stage (``hosts``'s ``PLUGIN.engine``) does the rest: a name of its
zones without an entry falls through or is SERVFAIL (no SOA to build an
NXDOMAIN from, as CoreDNS); a PTR question without an entry always goes to the
next plugin; other names outside its zones go to the next plugin.

The file is re-read every ``reload`` when its modification time or size
changed (as CoreDNS); each reload publishes only the names that changed.  A
missing or unreadable file is logged and serves the inline entries.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from typing import Any

from fastdns import wire
from fastdns._packed import PackedStore
from fastdns.compiled import EntryEncoder, pack_bodies, publish_entries, qname_body
from fastdns.files import FilePoller, FileRefused, read_limited
from fastdns.limits import HOSTS_FILE_MAX
from fastdns.records import AAAA, PTR, A, Answer, NOERROR, Record

__all__ = ["HostsSource", "parse_hosts", "compile_hosts"]

log = logging.getLogger("fastdns.plugin.hosts")

Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


def _in_zones(name: str, zones: tuple[str, ...]) -> bool:
    return any(z == "." or name == z or name.endswith("." + z) for z in zones)


def parse_hosts(text: str, zones: tuple[str, ...]) -> list[tuple[Addr, str]]:
    """``(address, name)`` pairs of hosts-file ``text`` whose names are in ``zones``
    (absolute, lower case), in file order; comments, short lines and bad
    addresses are skipped as CoreDNS skips them."""
    out: list[tuple[Addr, str]] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            addr = ipaddress.ip_address(fields[0].split("%", 1)[0])
        except ValueError:
            continue
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped              # ::ffff:a.b.c.d is IPv4 (Go's To4)
        for raw in fields[1:]:
            name = raw.lower().rstrip(".") + "."
            if _in_zones(name, zones):
                out.append((addr, name))
    return out


def compile_hosts(pairs: list[tuple[Addr, str]], ttl: int, reverse: bool,
                  other_falls: Any = None) -> dict[bytes, bytes]:
    """``wire name → packed entry`` for the ``(address, name)`` pairs.

    ``other_falls(name)``: True where types other than A/AAAA of an existing
    name fall through (``fallthrough_unsupported``): those names get no entry
    for other types, so the engine's fallthrough takes them."""
    v4: dict[str, list[Addr]] = {}
    v6: dict[str, list[Addr]] = {}
    ptr: dict[Addr, list[str]] = {}
    for addr, name in pairs:
        fam = v4 if addr.version == 4 else v6
        if addr not in fam.setdefault(name, []):
            fam[name].append(addr)
        if reverse and not name.startswith("*."):
            names = ptr.setdefault(addr, [])
            if name not in names:
                names.append(name)
    encoder = EntryEncoder([])
    nodata = Answer(NOERROR)
    out: dict[bytes, bytes] = {}
    for name in dict.fromkeys([*v4, *v6]):
        key = wire.name_from_text(name)
        if name.startswith("*."):
            out[key] = _wildcard_entry(name, v4, v6, ttl, other_falls)
            continue
        inner: dict[int, Answer] = {} if other_falls and other_falls(name) else {0: nodata}
        for rtype, fam in ((A, v4), (AAAA, v6)):
            addrs = fam.get(name)
            inner[rtype] = Answer(NOERROR, tuple(Record(name, rtype, ttl, str(a))
                                                 for a in addrs)) if addrs else nodata
        out[key] = encoder.encode(name, key, inner)
    for addr, names in ptr.items():
        rname = addr.reverse_pointer + "."
        key = wire.name_from_text(rname)
        out[key] = encoder.encode(rname, key, {PTR: Answer(NOERROR, tuple(
            Record(rname, PTR, ttl, n) for n in names))})
    return out


def _wildcard_entry(name: str, v4: dict[str, list[Addr]], v6: dict[str, list[Addr]], ttl: int,
                    other_falls: Any) -> bytes:
    """The entry of a ``*.<parent>`` name: it answers names of any length in its
    place, so its records are owned by whatever the question's name is."""
    nodata = qname_body(NOERROR, True, [])
    bodies = {} if other_falls and other_falls(name) else {0: nodata}
    for rtype, fam in ((A, v4), (AAAA, v6)):
        addrs = fam.get(name)
        bodies[rtype] = qname_body(NOERROR, True, [(rtype, 1, ttl, a.packed) for a in addrs]) \
            if addrs else nodata
    return pack_bodies(bodies)


class HostsSource:
    """One ``hosts`` table stage's answers, kept current (see the module doc)."""

    def __init__(self, ctx: Any) -> None:
        self.conf = ctx.conf
        self.zones = ctx.zones
        self.on_delta = ctx.on_delta
        self.lock = threading.Lock()
        self.store = PackedStore()
        self.encoder = EntryEncoder([])
        self.synced = False
        self._inline = parse_hosts("\n".join(f"{ip} {' '.join(names)}"
                                              for ip, names in self.conf.inline), self.zones)
        self._file_pairs: list[tuple[Addr, str]] = []
        self._stamp: tuple[float, int] | None = None
        self._poller: FilePoller | None = None

    def _other_falls(self, name: str) -> bool:
        fall = self.conf.fallthrough
        return bool(self.conf.fallthrough_unsupported and fall is not None
                    and _in_zones(name, tuple(z.lower() for z in fall)))

    def zone_answers(self) -> list[tuple[None, None]]:
        """No negatives: an absent name of its zones is SERVFAIL (hosts has no SOA)."""
        return [(None, None) for _ in self.zones]

    def _read(self) -> bool:
        """Re-read the file if it changed; True if its entries did."""
        path = self.conf.path
        try:
            st = os.stat(path)
        except OSError as exc:
            if self._stamp is not None or not self.synced:
                log.warning("plugin/hosts: cannot read %s: %s; serving the inline entries",
                            path, exc.strerror or exc)
            changed = bool(self._file_pairs)
            self._file_pairs, self._stamp = [], None
            return changed
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stamp:
            return False
        try:
            text = read_limited(path, HOSTS_FILE_MAX, "hosts file").decode("utf-8", "replace")
        except (OSError, FileRefused) as exc:
            log.warning("plugin/hosts: cannot read %s: %s; keeping what was read before",
                        path, exc)
            return False
        self._stamp = stamp
        pairs = parse_hosts(text, self.zones)
        changed = pairs != self._file_pairs
        self._file_pairs = pairs
        return changed

    def _compile(self, full: bool) -> None:
        entries = compile_hosts(self._file_pairs + self._inline, self.conf.ttl,
                                not self.conf.no_reverse, self._other_falls)
        with self.lock:
            if full:
                self.synced = True
            publish_entries(self.store, entries, self.encoder, self.on_delta, full)
        if not full:
            log.info("plugin/hosts: %s reloaded: %d names", self.conf.path, len(entries))

    def start(self) -> None:
        """Read now; then check the file every ``reload`` (0: never)."""
        self._read()
        self._compile(full=True)
        if self.conf.reload > 0:
            self._poller = FilePoller(self.conf.reload, self._reload,
                                      f"plugin/hosts: reloading {self.conf.path}", "hosts-reload")

    def _reload(self) -> None:
        if self._read():
            self._compile(full=False)

    def stop(self) -> None:
        """Stop watching the file."""
        if self._poller is not None:
            self._poller.stop()
            self._poller = None
