"""The ``bind`` plugin (see README.md; settings in conf.py)."""
