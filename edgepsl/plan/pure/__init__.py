"""Pure-Python twin of the compiled scheduling core (csrc/): same functions, same results, the test oracle."""
from edgepsl.plan.pure.assign import assign_balanced_greedy, assign_greedy_eft, assign_random
from edgepsl.plan.pure.bounds import joint_bound, lower_bound, window_bound
from edgepsl.plan.pure.constants import BWD, FWD, RULE_FCFS, RULE_FWD_FIRST, RULE_TAIL, RULES
from edgepsl.plan.pure.dispatch import dispatch, pick_next
from edgepsl.plan.pure.evaluate import evaluate
from edgepsl.plan.pure.insert import assign_greedy_insert
from edgepsl.plan.pure.jackson import jackson_preemptive
from edgepsl.plan.pure.pipeline import PIPE_FCFS, PIPE_RULES, PIPE_WORK, pipe_dispatch, pipe_evaluate, pipe_span
from edgepsl.plan.pure.search import local_search, new_memo

__all__ = [
    "BWD", "FWD", "PIPE_FCFS", "PIPE_RULES", "PIPE_WORK", "RULES", "RULE_FCFS", "RULE_FWD_FIRST", "RULE_TAIL",
    "assign_balanced_greedy", "assign_greedy_eft", "assign_greedy_insert", "assign_random",
    "dispatch", "evaluate", "jackson_preemptive", "joint_bound", "local_search", "lower_bound", "new_memo",
    "pick_next", "pipe_dispatch", "pipe_evaluate", "pipe_span", "window_bound",
]
