"""The ``acl`` plugin (see README.md; settings in conf.py)."""
