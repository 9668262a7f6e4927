"""Red-team probes against the env, through its public API only (issue #8).

``attacks.py`` is the probe library (plain data), ``tasks.py`` the pure-noise tasks on which any
reward above chance is stolen, ``harness.py`` runs a probe through ``gym.make`` / ``reset`` /
``step`` and judges the outcome against ``SANDBOX_CONTRACT.md``. The tests and
``benchmarks/adversarial.py`` share all three.
"""
