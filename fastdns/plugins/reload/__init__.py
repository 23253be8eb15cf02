"""The ``reload`` plugin (see README.md; settings in conf.py)."""
