"""The ``errors`` plugin (see README.md; settings in conf.py)."""
