"""Reproduction (floor 6): the whole paper from features (`avmaster reproduce plan / run`): the plan, its
report, the launchers and the cross-machine work lock.
"""
