"""How a worker process starts: the same ``fastdns`` as its coordinator.

A worker is a fresh interpreter.  Started as ``python -m fastdns.worker.main``
it would put the current directory first on ``sys.path``, and a ``fastdns/``
source tree there (the clone's root, where users type ``fastdns serve``)
would shadow the installed package: the worker would import uncompiled
sources and die.  So the supervisor starts ``python -P -c`` :data:`BOOT`
(``-P``: no current directory on the path) with the coordinator's own
``sys.path`` in the environment, as :mod:`multiprocessing`'s spawn start
method does; the worker then resolves every import exactly as the
coordinator did, and :func:`boot` checks that the ``fastdns`` it found is the
coordinator's before anything else.

Until it reports ready, a worker writes why it could not start (one line) to
a pipe the supervisor reads when it reaps it: an import that fails is a
configuration-class failure the coordinator reports and stops on, not a
crash to respawn forever.  This module imports nothing of fastdns at its top.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

__all__ = ["BOOT", "ENV_PACKAGE", "ENV_SYS_PATH", "StartupStatus", "boot", "worker_env"]

ENV_SYS_PATH = "FASTDNS_WORKER_SYS_PATH"     # the coordinator's sys.path, JSON
ENV_PACKAGE = "FASTDNS_WORKER_PACKAGE"       # the directory of the coordinator's fastdns

#: The ``-c`` program of a worker process (standard library only until the path is set).
BOOT = ("import json, os, sys\n"
        f"sys.path[:] = json.loads(os.environ.pop({ENV_SYS_PATH!r}))\n"
        "from fastdns.worker.boot import boot\n"
        "sys.exit(boot(sys.argv[1:]))\n")


def worker_env() -> dict[str, str]:
    """The environment of a worker: ours, plus where our ``fastdns`` came from."""
    import fastdns

    cwd = os.getcwd()
    path = [os.path.join(cwd, p) if not os.path.isabs(p) else p for p in sys.path]
    env = dict(os.environ)
    env[ENV_SYS_PATH] = json.dumps(path)
    env[ENV_PACKAGE] = os.path.dirname(os.path.abspath(fastdns.__file__))
    return env


class StartupStatus:
    """The write end of the supervisor's startup pipe (``--status-fd``).

    :meth:`fail` writes one line and closes it; :meth:`ready` closes it
    without a word (what happens after ready is reported the usual ways).
    """

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    @property
    def open(self) -> bool:
        return self.fd is not None

    def fail(self, reason: str) -> None:
        if self.fd is None:
            return
        line = " ".join(reason.split())[:1000] + "\n"
        try:
            os.write(self.fd, line.encode("utf-8", "replace"))
        except OSError:
            pass
        self.ready()

    def ready(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


def _status_fd(argv: Sequence[str]) -> int | None:
    for i, arg in enumerate(argv):
        if arg == "--status-fd" and i + 1 < len(argv) and argv[i + 1].isdigit():
            return int(argv[i + 1])
    return None


def boot(argv: Sequence[str]) -> int:
    """Check the package, import the worker, run it; returns the exit code."""
    from fastdns.ipc import schema

    status = StartupStatus(_status_fd(argv))
    import fastdns

    expected = os.environ.pop(ENV_PACKAGE, "")
    found = os.path.dirname(os.path.abspath(fastdns.__file__))
    if expected and os.path.realpath(found) != os.path.realpath(expected):
        status.fail(f"the worker imported fastdns from {found}, the coordinator runs {expected}")
        return schema.EXIT_STARTUP
    try:
        from fastdns.worker.main import main
    except ImportError as exc:
        from fastdns._build import missing_extension

        status.fail(missing_extension(exc) or f"cannot import the worker from {found}: {exc}")
        return schema.EXIT_STARTUP
    try:
        return main(list(argv), status=status)
    except SystemExit:
        raise
    except BaseException as exc:
        if status.open:
            status.fail(f"worker failed while starting: {type(exc).__name__}: {exc}")
        raise
