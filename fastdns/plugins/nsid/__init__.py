"""The ``nsid`` plugin (see README.md; settings in conf.py)."""
