"""The ``health`` plugin (see README.md; settings in conf.py)."""
