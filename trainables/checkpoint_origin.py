"""Where a trial's model came from: the trial (and epoch) whose checkpoint it last continued from.

Both trainables write who saved a checkpoint (``saved_by``) and this origin into it, and report the
origin in every result as ``restored_from_trial`` / ``restored_from_epoch``. Loading another trial's
checkpoint (a PBT exploit) makes that trial the origin; loading the trial's own checkpoint (a resume,
or synchronous PBT moving a paused member to another actor) keeps the origin saved with it, so a
trial's logged results name the last donor even when its own checkpoint was reloaded since.
"""

from __future__ import annotations

from typing import Any

NONE: tuple[str, float] = ("", 0)


def origin_after_load(state: dict[str, Any], own_trial: str, epoch: float) -> tuple[str, float]:
    """The origin of a model just loaded from ``state`` (saved at ``epoch``) into trial ``own_trial``."""
    saver = str(state.get("saved_by", ""))
    if saver and saver != own_trial:
        return saver, epoch
    saved = state.get("restored_from")  # older checkpoints lack it
    return (str(saved[0]), saved[1]) if saved else NONE
