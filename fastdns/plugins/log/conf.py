"""``log [NAMES…] [FORMAT] { class CLASSES… }``: query logging rules."""

from __future__ import annotations

from dataclasses import dataclass

from fastdns.config.dispenser import Dispenser, expect_args, parse_zones

__all__ = ["LogConf", "LogRule", "parse", "merge", "ONCE", "COMMON_FORMAT", "COMBINED_FORMAT"]

ONCE = False  # several log lines add rules
COMMON_FORMAT = ('{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} '
                 '{>bufsize}" {rcode} {>rflags} {rsize} {duration}')
COMBINED_FORMAT = COMMON_FORMAT + ' "{>opcode}"'
DEFAULT_FORMAT = COMMON_FORMAT
CLASSES = ("all", "success", "denial", "error")


@dataclass(frozen=True)
class LogRule:
    """Log queries under ``name`` whose response class is in ``classes``, as ``format``."""

    name: str = "."
    format: str = DEFAULT_FORMAT
    classes: tuple[str, ...] = ("all",)


@dataclass(frozen=True)
class LogConf:
    """All the log rules of a server block, in Corefile order."""

    rules: tuple[LogRule, ...] = (LogRule(),)


def parse(d: Dispenser) -> LogConf:
    """Parse one ``log`` directive."""
    args = list(d.args)
    fmt = DEFAULT_FORMAT
    if len(args) >= 2 and "{" in args[-1].text:
        fmt = args.pop().text.replace("{common}", COMMON_FORMAT).replace("{combined}",
                                                                          COMBINED_FORMAT)
    names = parse_zones(args) if args else (".",)
    classes: list[str] = []
    for sub in d.block():
        if sub.name.text != "class":
            raise d.unknown(sub)
        expect_args(sub.name, sub.args, 1, None, "class all|success|denial|error...")
        for a in sub.args:
            if a.text.lower() not in CLASSES:
                raise a.error(f"invalid log class {a.text!r} (all, success, denial, error)")
            classes.append(a.text.lower())
    cls = tuple(dict.fromkeys(classes)) or ("all",)
    return LogConf(tuple(LogRule(n, fmt, cls) for n in names))


def merge(confs: list[LogConf]) -> LogConf:
    """Several ``log`` lines in one server block: all their rules."""
    return LogConf(tuple(r for c in confs for r in c.rules))
