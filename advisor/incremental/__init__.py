"""``advise --from``: continue an earlier recommendation on expanded data, then resume the climb if it fails.

- ``executor``: :func:`continue_from`, which carries out the continuation the policy decides
  (:mod:`advisor.climb.continuing`, through :func:`advisor.climb.policy.decide`) within the budgets;
- ``inputs``: what ``--from`` starts from (the earlier report, run, rows and trials);
- ``earlier``: the earlier model judged as it stands, its head extended (``head``) to new labels;
- ``resumption``: the climb resumed on the rungs above when continuing fails;
- ``comparison``: what continuing saved against training from scratch, with paired differences.
"""
