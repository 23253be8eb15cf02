"""Build the Cython extensions; metadata lives in pyproject.toml.

Every ``fastdns/**/_*.pyx`` becomes an extension module of the same dotted
name.  ``FASTDNS_DEBUG=1`` builds with assertions, ``-O0 -g`` and an HTML
annotation beside each module (to see which lines touch Python).

The modules are translated and compiled in parallel, one job per available
core (``FASTDNS_BUILD_JOBS=N`` overrides): each module's C file and object
depend only on its own sources, so the result is the same in any order.
"""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("FASTDNS_DEBUG", "0") == "1"


def _jobs() -> int:
    env = os.environ.get("FASTDNS_BUILD_JOBS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


JOBS = _jobs()


class ParallelBuildExt(build_ext):
    """``build_ext`` compiling the extensions ``JOBS`` at a time (unless ``-j`` says)."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if not self.parallel:
            self.parallel = JOBS

if DEBUG:
    cflags = ["-O0", "-g3", "-DFASTDNS_DEBUG=1"]
else:
    cflags = ["-O2", "-DFASTDNS_DEBUG=0"]


def extensions() -> list:
    mods = []
    for path in sorted(glob.glob("fastdns/**/_*.pyx", recursive=True)):
        name = path[:-4].replace(os.sep, ".")
        mods.append(
            Extension(
                name,
                [path],
                include_dirs=["fastdns/_includes"],
                extra_compile_args=cflags + ["-Wno-unused-function"],
                libraries=["rt"],
            )
        )
    return mods


setup(
    cmdclass={"build_ext": ParallelBuildExt},
    ext_modules=cythonize(
        extensions(),
        compiler_directives={
            "language_level": 3,
            "boundscheck": DEBUG,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": DEBUG,
            "embedsignature": True,
        },
        annotate=DEBUG,
        nthreads=JOBS if JOBS > 1 else 0,
        include_path=["fastdns", "fastdns/_includes"],
    ),
)
