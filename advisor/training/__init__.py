"""Fitting one model: the baseline, a frozen-encoder probe, or one fine-tune with one set of hyperparameters.

- ``train``: :func:`train_run`, a fine-tune -> RunResult in named steps (load, fit, outcome, deliver);
- ``attempt``: a run's Trainer attempts (the restart at half the batch after an OOM), students' too;
- ``hf_trainer``: the Hugging Face Trainer as every attempt uses it (precision, evaluation batch, stop together);
- ``baseline``: TF-IDF + logistic regression, judged like any rung; the shared cross-validation;
- ``probe``: frozen-encoder probes (pooling, linear head, saved folder, embedding cache);
- ``batching``, ``inference``, ``best``: length-bucketed batches, batched predictions, best weights;
- ``stopping``: how a run ended, read in one place; the RunWatcher callbacks; FitGate;
- ``counting``: MeteringCallback, real and padded tokens and analytic FLOPs counted at the model.
"""
