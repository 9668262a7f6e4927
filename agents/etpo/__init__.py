"""The reference ETPO agent: entropy-regularized token-level policy optimization (torch).

``soft_bellman`` (the math), ``models`` (π, Q, Q̄, ρ; full copies or LoRA), ``optim``,
``config`` (:class:`EtpoConfig`), ``trainer`` (:func:`train`, :func:`evaluate`), ``agent``
(:class:`EtpoAgent`), ``toy`` (a known-answer env), ``cli``.
"""
