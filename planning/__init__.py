"""Staged-hepatectomy planning: plain arithmetic on volumes (mL) and times (days), no arrays.

Modules: thresholds, liver_volume (BSA, TELV, sFLR, DH, KGR), assessment (verdict), growth
(dM/dt = k*Qp/M and its fit), scenarios (PVE/PVL/LVD/ALPPS, race against the tumour), tumour,
reserve (recurrence reserve). Never imports pipeline.
"""
