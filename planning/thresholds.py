"""Minimum future-liver-remnant (FLR) thresholds by parenchymal quality, and optional criteria.

The minimum safe remnant is a percentage of the *functional* liver volume (total liver minus
tumour) that depends on how healthy the parenchyma is (seed 000: "20 %, 30 %, 40 %"):

========================  =========  ==================  ==================================
parenchyma                default    literature range    references
========================  =========  ==================  ==================================
``"normal"``              20 %       20–25 %             Abdalla 2002; Kishi 2009
``"chemotherapy"``        30 %       30–35 %             Shindoh 2013b; Vauthey 2006
``"cirrhosis"``           40 %       >= 40 %             Kubota 1997; Shirabe 1999
========================  =========  ==================  ==================================

Optional criteria evaluated by :func:`hepatoplan.planning.assessment.assess_remnant` when their inputs are
given:

* standardized FLR (sFLR, FLR over the BSA-estimated total liver volume) against the same
  parenchyma threshold (Vauthey 2002; Kishi 2009);
* FLR-to-body-weight ratio >= 0.5 % (Truant 2007), assuming a liver density of 1 g/mL;
* kinetic growth rate (KGR) >= 2 %/week after portal vein embolization (Shindoh 2013a).

References
----------
Abdalla EK, Barnett CC, Doherty D, Curley SA, Vauthey JN. Extended hepatectomy in patients with
hepatobiliary malignancies with and without preoperative portal vein embolization. Arch Surg
2002;137:675-680.

Kishi Y, Abdalla EK, Chun YS, et al. Three hundred and one consecutive extended right
hepatectomies: evaluation of outcome based on systematic liver volumetry. Ann Surg
2009;250:540-548.

Vauthey JN, Pawlik TM, Ribero D, et al. Chemotherapy regimen predicts steatohepatitis and an
increase in 90-day mortality after surgery for hepatic colorectal metastases. J Clin Oncol
2006;24:2065-2072.

Shindoh J, Tzeng CWD, Aloia TA, et al. Optimal future liver remnant in patients treated with
extensive preoperative chemotherapy for colorectal liver metastases. Ann Surg Oncol
2013;20:2493-2500. (2013b)

Kubota K, Makuuchi M, Kusaka K, et al. Measurement of liver volume and hepatic functional reserve
as a guide to decision-making in resectional surgery for hepatic tumors. Hepatology
1997;26:1176-1181.

Shirabe K, Shimada M, Gion T, et al. Postoperative liver failure after major hepatic resection for
hepatocellular carcinoma in the modern era with special reference to remnant liver volume.
J Am Coll Surg 1999;188:304-309.

Truant S, Oberlin O, Sergent G, et al. Remnant liver volume to body weight ratio > or = 0.5%: a new
cut-off to estimate postoperative risks after extended resection in noncirrhotic liver.
J Am Coll Surg 2007;204:22-33.

Shindoh J, Truty MJ, Aloia TA, et al. Kinetic growth rate after portal vein embolization predicts
posthepatectomy outcomes: toward zero liver-related mortality in patients with colorectal liver
metastases and small future liver remnant. J Am Coll Surg 2013;216:201-209. (2013a)
"""

from __future__ import annotations

from hepatoplan.errors import InputError

from hepatoplan.planning import _validate

#: Default minimum FLR, percent of functional liver volume, by parenchymal quality.
#: Literature ranges: normal 20–25 %, chemotherapy-injured 30–35 %, cirrhosis >= 40 %.
PARENCHYMA_THRESHOLD_PERCENT: dict[str, float] = {
    "normal": 20.0,
    "chemotherapy": 30.0,
    "cirrhosis": 40.0,
}

#: Literature range of the minimum FLR (percent), ``(low, high)``; ``high`` None = open-ended.
PARENCHYMA_THRESHOLD_RANGE_PERCENT: dict[str, tuple[float, float | None]] = {
    "normal": (20.0, 25.0),
    "chemotherapy": (30.0, 35.0),
    "cirrhosis": (40.0, None),
}

#: Minimum FLR-to-body-weight ratio, percent (Truant 2007).
FLR_TO_BODY_WEIGHT_MIN_PERCENT = 0.5

#: Minimum kinetic growth rate after PVE, percentage points of sFLR per week (Shindoh 2013a).
KGR_MIN_PERCENT_PER_WEEK = 2.0

#: The accepted parenchyma names, in order of increasing threshold.
PARENCHYMA_CHOICES: tuple[str, ...] = tuple(PARENCHYMA_THRESHOLD_PERCENT)


def check_parenchyma(parenchyma: str) -> str:
    """Return ``parenchyma`` normalised (lower case, stripped) or raise :class:`InputError`."""
    key = str(parenchyma).strip().lower()
    if key not in PARENCHYMA_THRESHOLD_PERCENT:
        raise InputError(
            f"parenchyma must be one of {', '.join(PARENCHYMA_CHOICES)}, got {parenchyma!r} "
            "(use 'chemotherapy' for a chemotherapy-injured liver)"
        )
    return key


def threshold_percent(parenchyma: str, *, override_percent: float | None = None) -> float:
    """Minimum safe FLR as a percentage of the functional liver volume.

    Parameters
    ----------
    parenchyma : {"normal", "chemotherapy", "cirrhosis"}
        Quality of the liver parenchyma (case-insensitive).
    override_percent : float, optional
        A centre-specific threshold in (0, 100] % that replaces the default (e.g. 25 % for a
        normal liver, 35 % after extensive chemotherapy). The parenchyma is still validated.

    Returns
    -------
    float
        Threshold in percent: 20 (normal, range 20–25), 30 (chemotherapy, range 30–35) or
        40 (cirrhosis, >= 40) unless overridden.

    Raises
    ------
    InputError
        Unknown ``parenchyma`` or ``override_percent`` outside (0, 100].
    """
    key = check_parenchyma(parenchyma)
    if override_percent is not None:
        return _validate.percent("threshold_percent", override_percent)
    return PARENCHYMA_THRESHOLD_PERCENT[key]
