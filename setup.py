"""Build the Cython extensions; metadata lives in pyproject.toml.

Every ``fastdns/**/_*.pyx`` becomes an extension module of the same dotted
name.  ``FASTDNS_DEBUG=1`` builds with assertions, ``-O0 -g`` and an HTML
annotation beside each module (to see which lines touch Python).
"""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FASTDNS_DEBUG", "0") == "1"

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
        include_path=["fastdns", "fastdns/_includes"],
    ),
)
