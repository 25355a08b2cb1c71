"""Rename a peer's state dict to our keys, checking every key and shape on the way."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch


def shape_text(t: torch.Tensor | None) -> str:
    """A tensor's shape for messages: `[24, 3, 3, 3]`, `[]` for a scalar, `none`."""
    return "none" if t is None else str(list(t.shape))


def _same(key: str) -> str:
    return key


def rename_state_dict(theirs: Mapping[str, torch.Tensor], expected: Mapping[str, str],
                      ours: Mapping[str, torch.Tensor], where: str, peer: str, *,
                      canonical: Callable[[str], str] = _same,
                      spell: Callable[[str], str] = _same,
                      skipped: Callable[[str], bool] = lambda key: False,
                      ) -> dict[str, torch.Tensor]:
    """`theirs` under our keys. `expected` maps each of their keys, in `canonical` form
    (their spellings of one weight reduced to one), to ours; `spell` writes a canonical key
    as a missing one is reported; `skipped` keys are dropped on purpose. ValueError naming
    the first bad key (in the file's order, then the missing ones in ours) with the
    expected and found shapes."""
    if not any(canonical(k) in expected for k in theirs):
        raise ValueError(f"checkpoint: {where!r} holds no {peer} supernet (none of its "
                         f"{len(theirs)} keys is one, e.g. '{spell(next(iter(expected)))}')")
    out: dict[str, torch.Tensor] = {}
    seen: dict[str, str] = {}
    for k, t in theirs.items():
        c = canonical(k)
        if c in expected:
            if c in seen:
                raise ValueError(f"checkpoint: {where!r} holds both {seen[c]!r} and {k!r}, "
                                 "two spellings of one weight")
            seen[c] = k
            want = ours[expected[c]]
            if t.shape != want.shape:
                raise ValueError(f"checkpoint: {where!r} key {k!r} has shape {shape_text(t)}, "
                                 f"expected {shape_text(want)}")
            out[expected[c]] = t
        elif not skipped(k):
            raise ValueError(f"checkpoint: {where!r} has unexpected key {k!r} (found shape "
                             f"{shape_text(t)}, expected none)")
    for c, o in expected.items():
        if o not in out:
            raise ValueError(f"checkpoint: {where!r} is missing key {spell(c)!r} (expected "
                             f"shape {shape_text(ours[o])}, found none)")
    return out
