"""The ``chaos`` plugin (see README.md; settings in conf.py)."""
