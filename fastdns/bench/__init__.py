"""fastdns-bench: a DNS load generator and comparison tool.

The per-packet work happens in :mod:`fastdns.bench._blast` (C level); these
Python modules prepare the work (query files, cluster scenarios), run the
engine in one or more processes and report.
"""
