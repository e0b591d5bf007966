"""Couinaud segments from the liver, portal-vein and hepatic-vein masks.

Arrays are canonical RAS+ (axis 0 -> patient Right, 1 -> Anterior, 2 -> Superior) with
``spacing_mm`` in the same axis order; see :func:`segment_couinaud`. Tuned values:
:class:`CouinaudParams`.
"""

from .params import CouinaudParams
from .segment import LABEL_4A, LABEL_4B, CouinaudResult, segment_couinaud, segment_couinaud_from_vessels

__all__ = ["segment_couinaud", "segment_couinaud_from_vessels", "CouinaudResult", "CouinaudParams",
           "LABEL_4A", "LABEL_4B"]
