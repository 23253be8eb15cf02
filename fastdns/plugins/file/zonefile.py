"""RFC 1035 master files read as CoreDNS (miekg/dns ``ZoneParser``) reads them.

:func:`load_zone` is what the *file* plugin checks at configuration time and
what the server can call to load and reload a zone; :func:`read_records` reads
text (the *template* plugin's records). Both use dnspython's zone file reader
with CoreDNS's leniency: a CNAME beside other data and an SOA away from the
origin are kept (dnspython's own zones refuse both; CoreDNS does not).

``$INCLUDE`` is handled here, not by dnspython (which would open the path
relative to the working directory, with no size bound): as miekg/dns, a
relative path is taken from the including file's directory, includes nest at
most 7 deep, and the included file starts with the includer's origin (or the
one given) and TTL. Every file is read as a regular file of at most the
remaining byte budget (:data:`ZONE_FILE_MAX` for a zone and all its includes).

Errors are :class:`ZoneFileError` with the file and line at fault.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tokenizer
import dns.zonefile

__all__ = ["ZoneFileError", "ZONE_FILE_MAX", "MAX_INCLUDE_DEPTH", "read_records", "load_zone",
           "read_bounded"]

#: Bytes of one zone with its $INCLUDEd files.  Proposed for fastdns.limits
#: (a zone file is data, not configuration: CONFIG_FILE_MAX's 1 MiB is too small
#: for real zones, and CoreDNS sets no bound at all).
ZONE_FILE_MAX = 64 << 20
MAX_INCLUDE_DEPTH = 7           # miekg/dns maxIncludeDepth
_DIRECTIVES = {"$ORIGIN", "$TTL", "$GENERATE"}


class ZoneFileError(ValueError):
    """A zone file that cannot be read or parsed: ``file``, ``line`` (0: none), ``detail``."""

    def __init__(self, file: str, line: int, detail: str) -> None:
        self.file, self.line, self.detail = file, line, detail
        super().__init__(f"{file}:{line}: {detail}" if line else f"{file}: {detail}")


class _Txn(dns.zonefile.RRsetsReaderTransaction):
    """dnspython's rrset collector without the checks CoreDNS does not make."""

    _owner: dns.name.Name | None = None

    def check_put_rdataset(self, check):  # type: ignore[no-untyped-def]
        """No CNAME-and-other-data refusal (CoreDNS serves such zones)."""

    def _add(self, replace, args):  # type: ignore[no-untyped-def]
        args = list(args)
        self._owner = args[0] if args and isinstance(args[0], dns.name.Name) else None
        try:
            return super()._add(replace, args)
        finally:
            self._owner = None

    def _origin_information(self):  # type: ignore[no-untyped-def]
        # Only consulted by _add's "SOA must be at the origin" check.
        origin, relativize, effective = super()._origin_information()
        return origin, relativize, self._owner if self._owner is not None else effective


class _Manager(dns.zonefile.RRSetsReaderManager):
    def writer(self, replacement: bool = False) -> _Txn:
        return _Txn(self, True, False)


def read_bounded(path: str, budget: int) -> str:
    """A regular file of at most ``budget`` bytes of UTF-8, else :class:`ZoneFileError`.

    ``FileNotFoundError``/``PermissionError``… propagate as ``OSError`` from the open.
    """
    with open(path, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ZoneFileError(path, 0, "not a regular file")
        data = f.read(budget + 1)
    if len(data) > budget:
        raise ZoneFileError(path, 0, f"larger than the {ZONE_FILE_MAX} bytes a zone and its "
                                     "included files may have")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ZoneFileError(path, line, f"not UTF-8 text ({exc.reason})") from None


@dataclass
class _Include:
    line: int
    path: str
    origin: str | None


def _split_includes(text: str, filename: str) -> list[_Include]:
    """The ``$INCLUDE`` lines of ``text`` (a directive starts in column 1)."""
    if "$include" not in text.lower():
        return []
    out: list[_Include] = []
    tok = dns.tokenizer.Tokenizer(text, filename)
    at_start = True
    try:
        while True:
            t = tok.get(want_leading=True)
            if t.is_eof():
                return out
            if t.is_eol():
                at_start = True
                continue
            if at_start and t.is_identifier() and t.value.upper() == "$INCLUDE":
                line = tok.line_number
                args = []
                while True:
                    a = tok.get()
                    if a.is_eol_or_eof():
                        break
                    args.append(a.value)
                if not 1 <= len(args) <= 2:
                    raise ZoneFileError(filename, line, "bad $INCLUDE: expected FILE [ORIGIN]")
                out.append(_Include(line, args[0], args[1] if len(args) > 1 else None))
                at_start = True
                continue
            at_start = False
    except dns.exception.SyntaxError as exc:
        raise ZoneFileError(filename, tok.line_number, str(exc)) from None


class _Reader(dns.zonefile.Reader):
    """dnspython's reader, remembering the line each record starts on: an error in
    a record's data is found after its end of line has been read, so the
    tokenizer's own line number is one too far."""

    rr_start: int | None = None

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        # miekg/dns keeps records outside the origin (CoreDNS accepts a zone file read
        # for another origin if it has an SOA anywhere); dnspython would skip them
        self.zone_origin = dns.name.root

    def _rr_line(self) -> None:
        self.rr_start = self.tok.line_number
        super()._rr_line()
        self.rr_start = None


class _Loader:
    def __init__(self, txn: _Txn, rdclass: dns.rdataclass.RdataClass, budget: int) -> None:
        self.txn = txn
        self.rdclass = rdclass
        self.budget = budget

    def run(self, text: str, filename: str, origin: dns.name.Name, *, depth: int,
            default_ttl: int | None, inherit: dns.zonefile.Reader | None = None,
            includes: bool = True) -> None:
        incs = _split_includes(text, filename) if includes else []
        lines = text.splitlines(keepends=True)
        cuts = [0] + [i.line for i in incs]          # segment k starts after line cuts[k]
        ends = [i.line - 1 for i in incs] + [len(lines)]
        reader = _Reader(
            dns.tokenizer.Tokenizer("".join(lines[cuts[0]:ends[0]]), filename), self.rdclass,
            self.txn, allow_directives=_DIRECTIVES, default_ttl=default_ttl)
        reader.current_origin = reader.last_name = origin
        if inherit is not None:     # an included file starts with its includer's TTLs
            for attr in ("last_ttl", "last_ttl_known", "default_ttl", "default_ttl_known",
                         "default_ttl_from_soa"):
                setattr(reader, attr, getattr(inherit, attr))
        self._read(reader, filename)
        for k, inc in enumerate(incs):
            if depth >= MAX_INCLUDE_DEPTH:
                raise ZoneFileError(filename, inc.line, "too deeply nested $INCLUDE")
            path = inc.path if os.path.isabs(inc.path) else \
                os.path.join(os.path.dirname(filename), inc.path)
            try:
                new_origin = dns.name.from_text(inc.origin, reader.current_origin) \
                    if inc.origin else reader.current_origin
            except dns.exception.DNSException as exc:
                raise ZoneFileError(filename, inc.line, f"bad origin in $INCLUDE: {exc}") \
                    from None
            try:
                sub = read_bounded(path, self.budget)
            except OSError as exc:
                raise ZoneFileError(filename, inc.line, f"failed to open {inc.path!r}: "
                                                        f"{exc.strerror or exc}") from None
            self.budget -= len(sub.encode())
            self.run(sub, path, new_origin, depth=depth + 1, default_ttl=default_ttl,
                     inherit=reader)
            seg = "".join(lines[cuts[k + 1]:ends[k + 1]])
            reader.tok = dns.tokenizer.Tokenizer(seg, filename)
            reader.tok.line_number = cuts[k + 1] + 1
            self._read(reader, filename)

    @staticmethod
    def _read(reader: _Reader, filename: str) -> None:
        try:
            reader.read()
        except (dns.exception.DNSException, ValueError, UnicodeError, TypeError) as exc:
            name, line = reader.tok.where()
            detail = str(exc) or type(exc).__name__
            prefix = f"{name}:{line}: "
            if detail.startswith(prefix):
                detail = detail[len(prefix):]
            if reader.rr_start is not None:
                line, reader.rr_start = reader.rr_start, None
            elif line > 1 and _after_newline(reader.tok):
                line -= 1               # a directive's error, seen past its end of line
            raise ZoneFileError(filename, line, detail) from None


def _after_newline(tok: dns.tokenizer.Tokenizer) -> bool:
    f = tok.file
    try:
        pos = f.tell()
        if pos == 0:
            return False
        f.seek(pos - 1)
        last = f.read(1)
        f.seek(pos)
    except (OSError, ValueError, AttributeError):
        return False
    return last == "\n" and tok.ungotten_char is None


def read_records(text: str, *, origin: str | dns.name.Name = dns.name.root,
                 filename: str = "<text>", rdclass: dns.rdataclass.RdataClass =
                 dns.rdataclass.IN, default_ttl: int | None = None,
                 includes: bool = False) -> list[dns.rrset.RRset]:
    """The records in ``text``, names made absolute from ``origin``.

    Without ``default_ttl`` a record needs a TTL of its own, from ``$TTL``
    or from an earlier record (as miekg/dns). ``$INCLUDE`` is refused unless
    ``includes`` (paths from ``filename``'s directory).
    """
    o = origin if isinstance(origin, dns.name.Name) else dns.name.from_text(origin)
    manager = _Manager(o, False, rdclass)
    with manager.writer(True) as txn:
        loader = _Loader(txn, rdclass, ZONE_FILE_MAX)
        loader.run(text, filename, o, depth=0, default_ttl=default_ttl, includes=includes)
    return manager.rrsets


def load_zone(path: str, origin: str, *, budget: int = ZONE_FILE_MAX) -> list[dns.rrset.RRset]:
    """Read and check the zone file at ``path`` for ``origin`` as CoreDNS's ``file.Parse``:
    at least one SOA, no NSEC3/NSEC3PARAM. ``OSError`` when it cannot be opened;
    :class:`ZoneFileError` for everything else."""
    text = read_bounded(path, budget)
    o = dns.name.from_text(origin)
    manager = _Manager(o, False, dns.rdataclass.IN)
    with manager.writer(True) as txn:
        loader = _Loader(txn, dns.rdataclass.IN, budget - len(text.encode()))
        loader.run(text, path, o, depth=0, default_ttl=None)
    rrsets = manager.rrsets
    for rrset in rrsets:
        if rrset.rdtype in (dns.rdatatype.NSEC3, dns.rdatatype.NSEC3PARAM):
            raise ZoneFileError(path, 0, f"NSEC3 zone is not supported, dropping RR: "
                                         f"{rrset.name} for zone: {origin}")
    if not any(r.rdtype == dns.rdatatype.SOA for r in rrsets):
        raise ZoneFileError(path, 0, f"file {path!r} has no SOA record for origin {origin}")
    return rrsets
