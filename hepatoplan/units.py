"""Unit constants: every conversion goes through a named constant."""

MM3_PER_ML = 1000.0
DAYS_PER_WEEK = 7.0


def voxel_volume_ml(spacing_mm) -> float:
    """Volume of one voxel in mL, from its spacing (three lengths in mm)."""
    x_mm, y_mm, z_mm = (float(s) for s in spacing_mm)
    return x_mm * y_mm * z_mm / MM3_PER_ML
