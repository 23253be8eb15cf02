"""``file`` parsing: CoreDNS's plugin/file/setup_test.go (TestFileParse, TestParseReload)
through fastdns.config.parse, with the confs and located errors fastdns gives; the zone
file is read at parse time as CoreDNS reads it (errors name the zone file and line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastdns.config import parse
from fastdns.errors import ConfigError
from fastdns.plugins.file.conf import DEFAULT_RELOAD, FileConf
from tests.test_plugin_file import DB_MIEK_NL

DNSSEX = """dnssex.nl. 1800 IN SOA linode.atoom.net. miek.miek.nl. 1459281744 14400 3600 604800 14400
dnssex.nl. 1800 IN NS linode.atoom.net.
*.dnssex.nl. 1800 IN TXT "Doing It Safe Is Better"
"""


@pytest.fixture()
def files(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "db.miek.nl").write_text(DB_MIEK_NL)
    (tmp_path / "db.dnssex.nl").write_text(DNSSEX)
    return str(tmp_path / "db.miek.nl"), str(tmp_path / "db.dnssex.nl")


def _conf(block: str, zone: str = ".") -> FileConf:
    return parse(f"{zone} {{\n{block}\n}}\n", filename="C", env={}).servers[0].plugin("file")


def _err(block: str, zone: str = ".") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(f"{zone} {{\n{block}\n}}\n", filename="C", env={})
    return info.value


def test_file_parse(files: tuple[str, str]) -> None:
    miek, dnssex = files
    c = _conf(f"file {miek} miek.nl.")
    assert c == FileConf(miek, ("miek.nl.",))
    assert c.reload == DEFAULT_RELOAD == 60.0 and c.fallthrough is None
    assert _conf(f"file {dnssex} dnssex.nl.").zones == ("dnssex.nl.",)
    assert _conf(f"file {dnssex} 10.0.0.0/8").zones == ("10.in-addr.arpa.",)
    assert _conf(f"file {dnssex} example.org. {{\n fallthrough\n}}").fallthrough == (".",)
    assert _conf(f"file {dnssex} example.org. {{\n fallthrough www.example.org\n}}"
                 ).fallthrough == ("www.example.org.",)
    # the server block's zones when none are given
    assert _conf(f"file {miek}", zone="miek.nl").zones == ("miek.nl.",)


def test_file_parse_errors(files: tuple[str, str]) -> None:
    miek, _ = files
    err = _err(f"file {miek} miek.nl {{\n transfer from 127.0.0.1\n}}")
    assert (err.line, err.column) == (3, 2) and "unknown property 'transfer'" in err.message
    err = _err("file")
    assert (err.line, err.column) == (2, 1) and "zone file" in err.message
    err = _err(f"file {miek} example.net. {{\n no_reload\n}}")
    assert (err.line, "no_reload" in err.message) == (3, True)
    err = _err(f"file {miek} example.net. {{\n no_rebloat\n}}")
    assert (err.line, "no_rebloat" in err.message) == (3, True)


def test_parse_reload(files: tuple[str, str]) -> None:
    miek, _ = files
    assert _conf(f"file {miek} {{\n reload 5s\n}}", zone="miek.nl").reload == 5.0
    assert _conf(f"file {miek} {{\n reload 10s\n}}", zone="miek.nl").reload == 10.0
    assert _conf(f"file {miek} {{\n reload 0\n}}", zone="miek.nl").reload == 0.0
    assert _conf(f"file {miek} {{\n reload_by_mtime\n}}", zone="miek.nl").reload_by_mtime
    err = _err(f"file {miek} {{\n reload\n}}", zone="miek.nl")
    assert err.line == 3 and "reload duration value is expected" in err.message
    err = _err(f"file {miek} {{\n reload soon\n}}", zone="miek.nl")
    assert err.line == 3
    err = _err(f"file {miek} {{\n reload_by_mtime yes\n}}", zone="miek.nl")
    assert err.line == 3


def test_zone_file_errors_name_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "db.bad"
    bad.write_text("$ORIGIN bad.test.\n@ 3600 IN SOA ns. h. 1 2 3 4 5\n"
                   "www 3600 IN A 10.0.0.1\nbroken 3600 IN A not-an-ip\n")
    err = _err(f"file {bad}", zone="bad.test")
    assert (err.line, err.column) == (2, 6)
    assert f"{bad}:4:" in err.message
    (tmp_path / "db.nosoa").write_text("www.bad.test. 3600 IN A 10.0.0.1\n")
    err = _err(f"file {tmp_path / 'db.nosoa'}", zone="bad.test")
    assert "no SOA record for origin bad.test." in err.message
    (tmp_path / "db.nsec3").write_text(
        "bad.test. 3600 IN SOA ns. h. 1 2 3 4 5\n"
        "bad.test. 3600 IN NSEC3PARAM 1 0 10 AABBCCDD\n")
    err = _err(f"file {tmp_path / 'db.nsec3'}", zone="bad.test")
    assert "NSEC3 zone is not supported" in err.message
    # $INCLUDE relative to the including file, and a missing one located
    (tmp_path / "inc").write_text("www IN A 10.0.0.9\n")
    (tmp_path / "db.inc").write_text("$ORIGIN bad.test.\n$TTL 60\n@ IN SOA ns. h. 1 2 3 4 5\n"
                                     "$INCLUDE inc\n$INCLUDE nothere\n")
    err = _err(f"file {tmp_path / 'db.inc'}", zone="bad.test")
    assert f"{tmp_path / 'db.inc'}:5:" in err.message and "nothere" in err.message


def test_missing_file(tmp_path: Path) -> None:
    # CoreDNS: a warning while it reloads (the zone is SERVFAIL until the file appears),
    # fatal with reload 0
    missing = tmp_path / "db.none"
    assert _conf(f"file {missing}", zone="x.test").path == str(missing)
    err = _err(f"file {missing} {{\n reload 0\n}}", zone="x.test")
    assert err.line == 2 and "cannot open zone file" in err.message


def test_several_lines_stay_separate(files: tuple[str, str]) -> None:
    miek, dnssex = files
    servers = parse(f". {{\nfile {miek} miek.nl\nfile {dnssex} dnssex.nl\n}}\n", filename="C",
                    env={}).servers
    confs = [p.conf for p in servers[0].plugins if p.name == "file"]
    assert [c.zones for c in confs] == [("miek.nl.",), ("dnssex.nl.",)]


def test_refused_upstream(files: tuple[str, str]) -> None:
    miek, _ = files
    err = _err(f"file {miek} {{\n upstream\n}}", zone="miek.nl")
    assert err.line == 3 and "upstream" in err.message
