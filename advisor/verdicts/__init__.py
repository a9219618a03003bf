"""Judging: metrics, intervals and three-state verdicts, and what each rung bought.

- ``criteria``: metrics, pass / fail / undecided verdicts from intervals, gains per unit of compute;
- ``stats``: Wilson and bootstrap intervals, paired gains (bootstrap, McNemar), rows needed to decide;
- ``gains``: each rung's gain over the baseline and the rung below, paired on the same rows.
"""
