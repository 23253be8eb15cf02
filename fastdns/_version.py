"""The single source of fastdns's version."""

__version__ = "0.1.0"
