"""The ``log`` plugin (see README.md; settings in conf.py)."""
