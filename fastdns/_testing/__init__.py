"""Reusable test helpers shipped with the package (namespaces, servers, upstreams)."""
