"""The scheduling problem of parallel split learning: instances, plans, evaluation, heuristics, bounds."""
