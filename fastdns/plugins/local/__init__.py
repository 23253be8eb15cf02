"""The ``local`` plugin (see README.md; settings in conf.py)."""
