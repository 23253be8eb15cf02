"""One subpackage per supported CoreDNS plugin, named as its Corefile directive.

Each has ``conf.py`` (a frozen dataclass of its settings and
``parse(d: Dispenser) -> conf``) and ``README.md`` (CoreDNS's shape: Name,
Description, Syntax, Examples, Metrics). The directive → parser table and the
execution order live in :mod:`fastdns.config.registry`.
"""
