"""The climb: one pure decision-maker and the executor that carries out its actions.

- ``policy``: :func:`decide` (evidence, config) -> the next action: the climb's, ``--from``'s
  (``continuing``: continue, stop, resume the climb) or the compaction step's (``compaction``);
- ``evidence``: what a decision reads and the actions it returns;
- ``family``: the Bonferroni family (candidates judged on the same rows) and the verdicts at its level;
- ``choices``: the chores around each step that ``decide`` asks for (order, forecast, warm start, shared
  study, read back or redo): the executor decides nothing;
- ``steps``, ``growth``: the climb's steps in order of forecast training FLOPs, and their data-size rungs;
- ``executor``: :class:`Climb`, which carries out actions, records each in the ledger, replays on resume;
- ``publish``: the recommendation scored once on test, moved to ``model/`` with its card;
- ``budget``, ``spending``, ``forecast``: costs forecast before a run, budgets left, learning curves;
- ``tuning``, ``pruning``: the per-rung optuna study and its paired pruner;
- ``distiller``: the Distiller protocol the caller supplies for the compaction step.
"""
