"""The ``debug`` plugin (see README.md; settings in conf.py)."""
