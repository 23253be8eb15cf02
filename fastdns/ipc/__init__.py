"""Coordinator ↔ worker messages (ZeroMQ frames, msgpack bodies)."""
