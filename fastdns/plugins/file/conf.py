"""``file DBFILE [ZONES…] { reload DURATION; reload_by_mtime; fallthrough [ZONES…] }``.

As CoreDNS's ``fileParse``, the zone file is read here, once per origin: a file
that does not parse is a configuration error (naming the zone file and its
line), and so is one that cannot be opened when ``reload`` is 0; with a
reload interval a missing file is only logged and the zone is SERVFAIL until it
appears.  The records themselves are read again by the coordinator's source
(:mod:`fastdns.plugins.file.source`), which compiles and reloads them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastdns.config.dispenser import (
    Dispenser, no_args, parse_duration, parse_fallthrough,
)

__all__ = ["FileConf", "parse", "ONCE", "DEFAULT_RELOAD"]

log = logging.getLogger("fastdns.plugin.file")

# CoreDNS keeps every file line of a block (one Zones map); fastdns keeps each
# line a table stage of its own, in Corefile order.
ONCE = False

DEFAULT_RELOAD = 60.0           # CoreDNS: one minute


@dataclass(frozen=True)
class FileConf:
    """One ``file`` line: the zone file and the origins it is read for."""

    path: str
    zones: tuple[str, ...]
    reload: float = DEFAULT_RELOAD
    reload_by_mtime: bool = False
    fallthrough: tuple[str, ...] | None = None


def parse(d: Dispenser) -> FileConf:
    """Parse one ``file`` directive (and check its zone file, as CoreDNS does)."""
    if not d.args:
        raise d.error("file needs a zone file: file DBFILE [ZONES...]")
    path_tok = d.args[0]
    path = d.path(path_tok)
    zones = tuple(z if z.endswith(".") else z + "." for z in d.zones_or_server(d.args[1:]))
    kw: dict[str, object] = {}
    for sub in d.block():
        name, a = sub.name.text, sub.args
        if name == "fallthrough":
            kw["fallthrough"] = parse_fallthrough(a)
        elif name == "reload":
            if len(a) != 1:
                raise sub.name.error("reload duration value is expected")
            kw["reload"] = parse_duration(a[0], what="reload duration")
        elif name == "reload_by_mtime":
            no_args(sub)
            kw["reload_by_mtime"] = True
        elif name == "upstream":
            # CoreDNS: "remove soon", accepted and ignored; fastdns refuses what it ignores
            raise sub.name.error("'upstream' in 'file' is obsolete in CoreDNS and not "
                                 "supported by fastdns: remove it")
        else:
            raise d.unknown(sub)
    conf = FileConf(path, zones, **kw)  # type: ignore[arg-type]
    _check(d, path_tok, conf)
    return conf


def _check(d: Dispenser, at: object, conf: FileConf) -> None:
    from fastdns.plugins.file.zonefile import ZoneFileError, load_zone

    for origin in conf.zones:
        try:
            load_zone(conf.path, origin)
        except OSError as exc:
            if conf.reload == 0:
                raise d.error(f"cannot open zone file {conf.path!r}: "
                              f"{exc.strerror or exc}", at) from None  # type: ignore[arg-type]
            log.warning("plugin/file: failed to open %r: %s: trying again in %gs",
                        conf.path, exc.strerror or exc, conf.reload)
            return
        except ZoneFileError as exc:
            raise d.error(f"zone file for {origin}: {exc}", at) from None  # type: ignore[arg-type]
