"""CGCNN's default atom features, computed from the ``mendeleev`` element database.

Xie & Grossman (PRL 120, 145301, 2018, Table S2) describe each element by nine properties,
each one-hot encoded: discrete ones by value, continuous ones in 10 equal bins over a fixed
range (values outside it fall into the end bins). The reference code ships them precomputed as
``atom_init.json``; here they are computed from a maintained element-data library so every
number has a source. A user's ``atom_init.json`` still replaces the table (see cif_folder.py).

Deviations from the paper's table, for want of data or sense: periods run 1..7 (the paper
reserves 9 slots), f-block elements count as group 3, valence electrons above 12 (late f block)
fall into the 12 slot, and a property mendeleev lacks for an element (e.g. the electron affinity
of most f-block elements) leaves that property's slots all zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Feature:
    """One property's encoding: ``values`` (discrete slots) or ``bins`` equal bins over [low, high]."""

    name: str
    values: tuple = ()
    low: float = 0.0
    high: float = 0.0
    bins: int = 0
    log: bool = False  # bin ln(value), as the paper does for ionisation energy and atomic volume

    @property
    def width(self) -> int:
        return len(self.values) or self.bins

    def encode(self, value: float | str | None) -> np.ndarray:
        """One-hot slots for ``value``; all zeros where it is unknown."""
        out = np.zeros(self.width, dtype=np.float32)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return out
        if self.values:
            if value in self.values:
                out[self.values.index(value)] = 1.0
            return out
        x = math.log(value) if self.log else float(value)
        index = int(np.clip(math.floor((x - self.low) / (self.high - self.low) * self.bins), 0, self.bins - 1))
        out[index] = 1.0
        return out


# The paper's Table S2 (ranges in the units given; electronegativity on Pauling's scale).
FEATURES = (
    Feature("group", values=tuple(range(1, 19))),
    Feature("period", values=tuple(range(1, 8))),
    Feature("electronegativity", low=0.5, high=4.0, bins=10),
    Feature("covalent_radius_pm", low=25.0, high=250.0, bins=10),
    Feature("valence_electrons", values=tuple(range(1, 13))),
    Feature("first_ionisation_energy_ev", low=1.3, high=3.3, bins=10, log=True),
    Feature("electron_affinity_ev", low=-3.0, high=3.7, bins=10),
    Feature("block", values=("s", "p", "d", "f")),
    Feature("atomic_volume_cm3_per_mol", low=1.5, high=4.3, bins=10, log=True),
)
ATOM_FEATURE_DIM = sum(feature.width for feature in FEATURES)  # 91
MAX_ATOMIC_NUMBER = 118
# First atomic number of each period 1..7 (and one past the last element).
_PERIOD_STARTS = (1, 3, 11, 19, 37, 55, 87, 119)


def group_and_period(z: int) -> tuple[int, int]:
    """Periodic-table group (1..18) and period (1..7) of element ``z``; f-block elements count as group 3."""
    period = next(p for p in range(1, 8) if z < _PERIOD_STARTS[p])
    offset = z - _PERIOD_STARTS[period - 1]
    if period == 1:
        return (1 if z == 1 else 18), 1
    if period <= 3:
        return (offset + 1 if offset < 2 else offset + 11), period
    if period <= 5:
        return offset + 1, period
    if offset < 2:
        return offset + 1, period
    if offset < 17:  # lanthanides / actinides (La..Lu, Ac..Lr)
        return 3, period
    return offset - 13, period


def _number(value: object) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def element_properties() -> dict[int, dict[str, float | str | None]]:
    """The nine properties of every element 1..118 from mendeleev, keyed by atomic number."""
    from mendeleev.econf import ElectronicConfiguration
    from mendeleev.fetch import fetch_table

    elements = fetch_table("elements").set_index("atomic_number")
    ionisation = fetch_table("ionizationenergies")
    first = ionisation[ionisation["ion_charge"] == 0].groupby("atomic_number")["ionization_energy"].first()
    properties = {}
    for z in range(1, MAX_ATOMIC_NUMBER + 1):
        row = elements.loc[z]
        group, period = group_and_period(z)  # mendeleev leaves the f block's group empty
        weight, density = _number(row["atomic_weight"]), _number(row["density"])
        configuration = ElectronicConfiguration(row["electronic_configuration"])
        properties[z] = {
            "group": int(_number(row["group_id"]) or group),
            "period": int(row["period"]),
            "electronegativity": _number(row["en_pauling"]),
            "covalent_radius_pm": _number(row["covalent_radius_pyykko"]),
            "valence_electrons": min(12, configuration.nvalence(row["block"], period)),
            "first_ionisation_energy_ev": _number(first.get(z)),
            "electron_affinity_ev": _number(row["electron_affinity"]),
            "block": row["block"],
            "atomic_volume_cm3_per_mol": weight / density if weight and density else None,
        }
    return properties


@lru_cache(maxsize=1)
def cgcnn_atom_feature_table() -> np.ndarray:
    """Feature row per atomic number 0..118, float32 [119, 91]; row 0 is unused (zeros).

    Read-only: callers that need to modify it must copy it.
    """
    table = np.zeros((MAX_ATOMIC_NUMBER + 1, ATOM_FEATURE_DIM), dtype=np.float32)
    for z, props in element_properties().items():
        table[z] = np.concatenate([feature.encode(props[feature.name]) for feature in FEATURES])
    table.setflags(write=False)
    return table
