"""What the user reads: the reports, the figure, the model card.

- ``render``: Report -> rows, plain-text table, JSON (report.json's schema: docs/report-schema.md);
- ``pages``: report.md and report.html, the three reports written atomically;
- ``plot``: validation metric with error bars against training PFLOPs;
- ``card``: the model card (README.md) saved with a model.
"""
