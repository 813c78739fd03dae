"""Without tqdm (a plain `pip install edgepsl`), `demo` and `coordinator` on a terminal print one line per round."""
from __future__ import annotations

import io
import sys

from edgepsl.cli._progress import progress


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_a_terminal_without_tqdm_gets_one_line_per_round(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `from tqdm import tqdm` raises ImportError
    stderr = Terminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    on_round, close = progress(3, 0)
    on_round({"round": 0, "loss": 2.25, "realised_makespan_ms": 41.6})
    on_round({"round": 1, "loss": 1.5, "realised_makespan_ms": 40.2, "accuracy": 0.4567})
    close()
    assert capsys.readouterr().out.splitlines() == ["round 1/3: loss 2.250, makespan 42ms",
                                                    "round 2/3: loss 1.500, makespan 40ms, acc 45.7%"]
    assert stderr.getvalue() == ""
