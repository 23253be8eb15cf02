"""The ``cache`` plugin (see README.md; settings in conf.py)."""
