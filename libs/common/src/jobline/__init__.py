"""Jobline core library: the pure job model and the thin I/O edges every service shares."""

__version__ = "0.1.0"
