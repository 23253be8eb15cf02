"""The ``loadbalance`` plugin (see README.md; settings in conf.py)."""
