"""Data files shipped with edgepsl."""
