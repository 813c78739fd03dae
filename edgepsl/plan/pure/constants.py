"""Job kinds and dispatch rules shared by the kernels (mirrored in csrc/constants.pxi)."""

FWD = 0
BWD = 1

RULE_FCFS = 0       # the paper's utils.fifo: smallest release first, idling for it if needed
RULE_FWD_FIRST = 1  # a released forward job before any backward; largest gap g first, then largest tail q'
RULE_TAIL = 2       # largest remaining tail first: forward g + p' + q', backward q'
RULES = (RULE_FCFS, RULE_FWD_FIRST, RULE_TAIL)
