"""The ``prometheus`` plugin (see README.md; settings in conf.py)."""
