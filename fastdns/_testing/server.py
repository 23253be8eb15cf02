"""Run ``python -m fastdns serve`` as a user would, for tests.

:class:`ServeProcess` starts the command on a free loopback port, waits until
every worker has bound its UDP socket and the server answers, and on
:meth:`~ServeProcess.stop` (also when a test fails) ends the coordinator and
any worker it left, by PID only.  The process-inspection helpers read
``/proc`` (Linux).
"""

from __future__ import annotations

import os
import signal
import random
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Self

import dns.exception
import dns.message
import dns.query
import dns.rcode

__all__ = [
    "ServeProcess",
    "child_pids",
    "cpu_ticks",
    "free_port",
    "port_is_free",
    "udp_socket_owners",
]


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host`` right now (bound without reuse).

    Taken below the kernel's ephemeral range, so that an outgoing connection
    made meanwhile (a client's source port) cannot take it before the server
    under test binds it.
    """
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    low = _ephemeral_low()
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10000, low) if low > 11000 else 0
        try:
            with socket.socket(fam, socket.SOCK_DGRAM) as u:
                u.bind((host, port))
                port = u.getsockname()[1]
                with socket.socket(fam, socket.SOCK_STREAM) as t:
                    t.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port found")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether UDP and a TCP listener can bind ``host:port`` without SO_REUSEPORT.

    SO_REUSEADDR is set on the TCP socket so that a client's TIME_WAIT does not
    count; a listening socket still does.
    """
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(fam, socket.SOCK_DGRAM) as u:
            u.bind((host, port))
        with socket.socket(fam, socket.SOCK_STREAM) as t:
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            t.bind((host, port))
            t.listen(1)
    except OSError:
        return False
    return True


def child_pids(pid: int) -> list[int]:
    """Live (non-zombie) processes whose parent is ``pid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return sorted(out)


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] != "Z"


def cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` in clock ticks (from /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def _socket_inodes(pid: int) -> set[int]:
    out: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out


def _udp_inodes(port: int) -> set[int]:
    out = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port:
                out.add(int(cols[9]))
    return out


def udp_socket_owners(port: int, pids: Iterable[int]) -> list[int]:
    """Those of ``pids`` holding a UDP socket bound to ``port``."""
    inodes = _udp_inodes(port)
    return [p for p in pids if _socket_inodes(p) & inodes]


class ServeProcess:
    """``python -m fastdns serve --conf FILE --workers N --port P`` in a subprocess.

    ``conf`` is a Corefile path (None: the bundled demo).  Output goes to a
    temporary file (:meth:`output`).  ``env`` entries are added to (None
    values removed from) the current environment.  Use as a context manager,
    or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, conf: str | Path | None = None, *, workers: int = 2,
                 port: int | None = None, host: str = "127.0.0.1",
                 extra_args: Sequence[str] = (), env: dict[str, str | None] | None = None,
                 cwd: str | Path | None = None, probe: tuple[str, str] = ("cluster.local.", "SOA"),
                 log_level: str = "info") -> None:
        self.conf = None if conf is None else str(conf)
        self.workers = workers
        self.port = port if port is not None else free_port(host)
        self.host = host
        self.probe = probe
        self.cmd = [sys.executable, "-m", "fastdns", "serve", "--workers", str(workers),
                    "--port", str(self.port), "--log-level", log_level, *extra_args]
        if self.conf is not None:
            self.cmd[4:4] = ["--conf", self.conf]
        self.env = dict(os.environ)
        for k, v in (env or {}).items():
            if v is None:
                self.env.pop(k, None)
            else:
                self.env[k] = v
        self.cwd = None if cwd is None else str(cwd)
        self.proc: subprocess.Popen[bytes] | None = None
        self._out = tempfile.NamedTemporaryFile(  # noqa: SIM115 - open for the run, closed in close()
            prefix="fastdns-serve-", suffix=".log", delete=False)
        self.seen_workers: set[int] = set()
        weakref.finalize(self, _remove, self._out.name)     # even if close() is never called

    # -- lifecycle -----------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def start(self, timeout: float = 20.0, wait: bool = True) -> ServeProcess:
        """Start the command; with ``wait``, return once :meth:`wait_ready` holds."""
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Until every worker holds a UDP socket on the port and a probe is answered.

        The probe must not come back SERVFAIL (the answer a worker gives until
        it has its tables).  Raises RuntimeError with the output if the
        server exits or the time runs out.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_running()
            pids = self.worker_pids()
            if len(pids) >= self.workers and \
                    len(udp_socket_owners(self.port, pids)) >= self.workers:
                r = self.try_query(*self.probe, timeout=0.3)
                if r is not None and r.rcode() != dns.rcode.SERVFAIL:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"fastdns serve not ready after {timeout}s:\n{self.output()}")

    def run_to_exit(self, timeout: float = 20.0) -> tuple[int, str]:
        """Start and wait for the command to exit by itself (a bad-input run).

        Workers that appear meanwhile are recorded (:meth:`leftovers`).
        Returns (exit code, output); on a timeout the server is stopped and
        RuntimeError raised.
        """
        self.start(wait=False)
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError(f"fastdns serve still running after {timeout}s:\n"
                                   f"{self.output()}")
            self.seen_workers.update(child_pids(self.pid))
            time.sleep(0.02)
        return self.proc.returncode, self.output()

    def _check_running(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"fastdns serve exited with {self.proc.returncode}:\n"
                               f"{self.output()}")

    def worker_pids(self) -> list[int]:
        """The coordinator's live children (its workers)."""
        pids = child_pids(self.pid)
        self.seen_workers.update(pids)
        return pids

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Signal the coordinator and wait; SIGKILL it and every worker seen if needed.

        Returns the coordinator's exit code (negative: killed by that signal).
        """
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.seen_workers.update(child_pids(self.pid))
            except OSError:
                pass
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.kill_leftovers()
        return self.proc.returncode

    def leftovers(self) -> list[int]:
        """Workers seen during the run that still exist."""
        return [p for p in sorted(self.seen_workers) if alive(p) and _is_worker(p)]

    def kill_leftovers(self) -> None:
        for p in self.leftovers():
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def output(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        self._out.flush()
        try:
            return Path(self._out.name).read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        """Stop (if running) and remove the output file."""
        self.stop()
        self._out.close()
        try:
            os.unlink(self._out.name)
        except OSError:
            pass

    def __enter__(self) -> Self:
        if self.proc is None:
            try:
                self.start()
            except BaseException:
                self.close()          # a server that never got ready is not left running
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queries -------------------------------------------------------------

    def query(self, qname: str, qtype: str = "A", *, tcp: bool = False, timeout: float = 2.0,
              **make: Any) -> dns.message.Message:
        """One query with dnspython (``make`` goes to ``dns.message.make_query``)."""
        q = dns.message.make_query(qname, qtype, **make)
        if tcp:
            return dns.query.tcp(q, self.host, port=self.port, timeout=timeout)
        return dns.query.udp(q, self.host, port=self.port, timeout=timeout,
                             ignore_trailing=False)

    def try_query(self, qname: str, qtype: str = "A", **kw: Any) -> dns.message.Message | None:
        """:meth:`query`, or None on a timeout or a refused connection."""
        try:
            return self.query(qname, qtype, **kw)
        except (dns.exception.Timeout, OSError):
            return None


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _is_worker(pid: int) -> bool:
    try:
        return b"fastdns.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
