"""One colour per method name, the same on every page, from a colour-blind-safe palette.

The palette joins Okabe & Ito's eight colours (2008) and Paul Tol's nine "muted" ones (2021), both
designed to stay distinguishable with the common colour-vision deficiencies. Registered methods have a
fixed entry; any other name gets a palette colour from a hash of the name, so it never changes either.
"""
from __future__ import annotations

import hashlib

PALETTE = (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000",  # Okabe-Ito (yellow last)
    "#332288", "#117733", "#44AA99", "#88CCEE", "#DDCC77", "#CC6677", "#AA4499", "#882255", "#999933",  # Tol muted
    "#F0E442", "#BBBBBB",
)
METHOD_COLOURS = {
    "full": "#0072B2", "linear-probe": "#E69F00", "lp-ft": "#009E73", "auto-rgn": "#D55E00",
    "auto-rgn+hessian": "#CC6677", "auto-rgn+change": "#882255", "auto-rgn+hessian+change": "#AA4499",
    "criticality-identity": "#56B4E9", "criticality-random": "#332288", "cross-validation": "#000000",
    "surprise": "#117733", "surprise-diff": "#999933", "auto-snr": "#CC79A7",
}


def method_of(label: str) -> str:
    """The method name of a label such as 'criticality-random (topk=2)'."""
    return label.split(" (", 1)[0]


def colour(label: str) -> str:
    """The colour of a method (or a method label with hyper-parameters): fixed per method name."""
    name = method_of(label)
    if name in METHOD_COLOURS:
        return METHOD_COLOURS[name]
    spare = [c for c in PALETTE if c not in METHOD_COLOURS.values()]
    return spare[int(hashlib.sha256(name.encode()).hexdigest(), 16) % len(spare)]
