"""The ``loop`` plugin (see README.md; settings in conf.py)."""
