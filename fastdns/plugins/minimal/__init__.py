"""The ``minimal`` plugin (see README.md; settings in conf.py)."""
