"""Training for the pack: procedural task data, the multi-task trainer, evaluation.

Nothing in unidiff_core/ or nodes/ imports this package.
"""
