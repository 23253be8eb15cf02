"""The ``hosts`` plugin (see README.md; settings in conf.py)."""
