"""The learning-mode tests share the segment tests' fixtures (the committed artifact, a private copy of it)."""
from tests.segment.conftest import artifact_copy  # noqa: F401
