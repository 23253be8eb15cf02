"""The ``any`` plugin (see README.md; settings in conf.py)."""
