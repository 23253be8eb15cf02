"""The ``forward`` plugin (see README.md; settings in conf.py)."""
