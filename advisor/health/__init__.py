"""Health rules that stop broken runs early, as a training debugger would.

- ``base``: RuleFiring and the HealthRule callback every rule builds on;
- ``rules``: NaN, divergence, vanishing gradients, a loss not moving; ``health_callbacks`` assembles them;
- ``watchdog``: rules that watch the machine (a stalled step, an idle GPU).
"""
