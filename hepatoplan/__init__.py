"""hepatoplan: liver-surgery planning from CT/MR studies.

One import name. The repository keeps its folders at the top level (``pipeline/``,
``segmentation/``, ``couinaud/``, ``resection/``, ``planning/``, ``data_samples/``) and installs
them as subpackages of this one (``pyproject.toml``'s ``package-dir``):

* :mod:`hepatoplan.pipeline` -- files, orchestration, CLI, reports, previews, batch;
* :mod:`hepatoplan.segmentation`, :mod:`hepatoplan.couinaud`, :mod:`hepatoplan.resection` --
  pure functions on canonical RAS+ arrays;
* :mod:`hepatoplan.planning` -- arithmetic on volumes and times, no arrays;
* :mod:`hepatoplan.data_samples` -- phantoms and the demo study.

This folder itself holds what every layer shares: the version, the error hierarchy
(:mod:`hepatoplan.errors`), input checks and unit constants (:mod:`hepatoplan.units`).
"""

__version__ = "0.1.0"
