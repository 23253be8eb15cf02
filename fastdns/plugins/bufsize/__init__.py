"""The ``bufsize`` plugin (see README.md; settings in conf.py)."""
