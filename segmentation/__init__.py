"""Automatic segmentation of the liver, tumours, portal and hepatic veins by classical image analysis.

No trained weights: intensity statistics are learned from each scan, then region competition,
morphology in millimetres and anatomical priors do the rest. Every function takes arrays in
canonical RAS+ orientation (axis 0 -> patient Right, axis 1 -> Anterior, axis 2 -> Superior, as
``nibabel.as_closest_canonical`` gives) plus ``spacing_mm``; nothing here reads or writes files.
"""

from .liver import segment_liver
from .params import LiverParams, SegmentationParams, SelfCheckParams, TumourParams, VesselParams
from .selfcheck import self_check
from .study import StudySegmentation, segment_study
from .tumours import segment_tumours
from .vessels import segment_vessels

__all__ = [
    "segment_liver", "segment_tumours", "segment_vessels", "segment_study", "StudySegmentation",
    "LiverParams", "TumourParams", "VesselParams", "SelfCheckParams", "SegmentationParams", "self_check",
]
