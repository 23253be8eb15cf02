"""The ``ready`` plugin (see README.md; settings in conf.py)."""
