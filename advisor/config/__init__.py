"""Configuration: YAML files < flags < ``--set`` layered into one validated, typed Config.

- ``settings``: :func:`build_config`, :class:`Config`, ``save_config``, ``CONFIG_DIR`` (the shipped YAML);
- ``sections``: the documented sections (DataConfig, TrainConfig, OptimConfig, ...);
- ``layering``: the layering itself, every problem collected (advisor and distill share it).
"""
