"""The ``whoami`` plugin (see README.md; settings in conf.py)."""
