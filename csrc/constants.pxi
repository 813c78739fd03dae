# Job kinds and dispatch rules (mirror of edgepsl/plan/pure/constants.py).
cdef enum:
    C_FWD = 0
    C_BWD = 1
    C_RULE_FCFS = 0
    C_RULE_FWD_FIRST = 1
    C_RULE_TAIL = 2
    N_RULES = 3
