"""Measured per-layer device profiles of the paper's testbed (JSON package data; MIT, see LICENSE)."""
