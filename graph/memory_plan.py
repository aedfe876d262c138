"""The static memory plan of a built model, shared by the CPU executor, the CUDA runner and
``export_library``: every value a step computes gets a slot; a slot is reused (best fit by
size) once the value in it is dead, so the planned bytes are usually far below the naive sum.

Example::

    sizes, slot_of, naive = plan_slots(steps, output_keys, keep_outputs=False, granule=8)
"""
from __future__ import annotations

__all__ = ["plan_slots"]


def plan_slots(steps, output_keys: set, keep_outputs: bool, granule: int = 1,
               size_of=None) -> tuple:
    """``(slot sizes in bytes, {value key: slot index}, naive bytes)`` for the values the
    ``steps`` compute, in run order (``graph.executor.Step``; keys by ``value_key``).

    Args:
        output_keys: the keys of the model's outputs.
        keep_outputs: outputs get slots of their own that are never reused (the CUDA runner
            copies them out after the run); else they get none (the caller gives fresh arrays).
        granule: slot sizes are rounded up to a multiple of it.
        size_of: bytes of a value's TensorType (default ``TensorType.nbytes``).

    A step's outputs are placed before its dead inputs are freed, so no output shares memory
    with an input of the same step.
    """
    from .executor import value_key
    last_use: dict = {}
    for i, step in enumerate(steps):
        for a in step.inputs:
            last_use[value_key(a)] = i
    sizes: list[int] = []
    free: list[int] = []
    holder: dict = {}   # key -> slot, while the value is alive and its slot may be reused
    slot_of: dict = {}
    naive = 0
    for i, step in enumerate(steps):
        for out in step.outputs:
            key = value_key(out)
            is_output = key in output_keys
            if key in slot_of or (is_output and not keep_outputs):
                continue
            need = max(1, size_of(out.type) if size_of else out.type.nbytes)
            naive += need
            fits = [s for s in free if sizes[s] >= need]
            if fits:
                slot = min(fits, key=lambda s: sizes[s])
                free.remove(slot)
            else:
                slot = len(sizes)
                sizes.append(-(-need // granule) * granule)
            slot_of[key] = slot
            if not is_output:
                holder[key] = slot
        for a in step.inputs:
            key = value_key(a)
            if last_use.get(key) == i and key in holder:
                free.append(holder.pop(key))
        for out in step.outputs:  # computed but never read
            key = value_key(out)
            if key in holder and key not in last_use:
                free.append(holder.pop(key))
    return sizes, slot_of, naive
