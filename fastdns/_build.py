"""What to say when ``fastdns`` was imported from a tree without its extensions.

The compiled modules (``fastdns._wire``, ``fastdns._loop``, ...) exist only
after a build.  Python imports a ``fastdns/`` directory from the current
directory (``python -m fastdns``) or from a script's directory before the
installed package, so a clone's source tree there shadows a working install.
"""

from __future__ import annotations

import os

__all__ = ["missing_extension"]


def missing_extension(exc: ImportError) -> str | None:
    """One line explaining ``exc`` if it is a missing compiled module, else None."""
    name = exc.name or ""
    here = os.path.dirname(os.path.abspath(__file__))
    parts = name.split(".")
    if parts[0] != "fastdns" or not os.path.exists(os.path.join(here, *parts[1:]) + ".pyx"):
        return None                    # not one of our extension modules
    return (f"{here} has no compiled extension {name}: it is a fastdns source tree that "
            f"shadows the installed package. Run from another directory, or build it in "
            f"place with `pip install -e .`")
