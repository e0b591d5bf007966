"""hepatoplan: liver-surgery planning from CT/MR studies.

This small package holds what every layer shares: the version, the error hierarchy
(:mod:`hepatoplan.errors`) and unit constants (:mod:`hepatoplan.units`). The work itself lives in
the top-level packages ``pipeline`` (files, orchestration, CLI), ``segmentation``, ``couinaud``,
``resection`` and ``planning`` (pure domain functions).
"""

__version__ = "0.1.0"
