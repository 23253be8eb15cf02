"""Every Corefile example in every plugin README parses, and every plugin has a README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fastdns.config import parse, registry

PLUGINS = Path(__file__).parent.parent / "fastdns" / "plugins"
FENCE = re.compile(r"^~~~ corefile\n(.*?)^~~~$", re.S | re.M)
EXAMPLES = [(readme.parent.name, i, block)
            for readme in sorted(PLUGINS.glob("*/README.md"))
            for i, block in enumerate(FENCE.findall(readme.read_text()))]


def test_every_supported_plugin_has_a_readme_with_examples() -> None:
    for name in registry.SUPPORTED:
        text = (PLUGINS / name / "README.md").read_text()
        for section in ("## Name", "## Description", "## Syntax", "## Examples", "## Metrics"):
            assert section in text, f"{name}: missing {section}"
        assert any(n == name for n, _, _ in EXAMPLES), f"{name}: no corefile example"


@pytest.mark.parametrize("name,index,text", EXAMPLES,
                         ids=[f"{n}-{i}" for n, i, _ in EXAMPLES])
def test_readme_example_parses(name: str, index: int, text: str, tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    (tmp_path / "cluster.yaml").write_text("apiVersion: v1\nkind: List\nitems: []\n")
    text = text.replace("/etc/resolv.conf", str(resolv))
    plan = parse(text, filename=str(tmp_path / "Corefile"), env={})
    assert any(p.name == name for s in plan.servers for p in s.plugins)
