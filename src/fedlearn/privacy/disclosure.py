"""Which shares an honest node reveals when the coordinator asks it to help unmask the sum.

In the last stage the coordinator tells each node which of its neighbours survived (their masked
inputs arrived) and which dropped out. For a survivor the node reveals its share of the
survivor's self-mask seed, so the self-mask can be removed; for a dropped neighbour it reveals
its share of that neighbour's ``mask`` private key, so the pairwise masks it left behind can be
removed. Never both for the same peer: with both, the coordinator could strip every mask from
that peer's input and read it. :func:`plan_disclosure` is that rule, and refuses a request that
breaks it, names a peer the node holds no shares of, or lists fewer survivors than the
threshold (Bonawitz et al. 2017 abort there, since too few survivors cannot unmask anyway).

A node must answer at most one unmasking request per round, or two requests could still split
one peer between them; the protocol keeps that state.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from fedlearn.core.checks import check_int
from fedlearn.core.errors import SecureAggregationError


@dataclass(frozen=True, slots=True, kw_only=True)
class Disclosure:
    """The peers whose shares a node reveals: self-mask shares of survivors, key shares of dropouts."""

    self_mask_shares_of: tuple[str, ...]
    mask_key_shares_of: tuple[str, ...]


def plan_disclosure(
    *, held: Collection[str], survivors: Collection[str], dropped: Collection[str], threshold: int
) -> Disclosure:
    """What to reveal when the coordinator claims ``survivors`` and ``dropped`` among the peers in ``held``.

    ``held`` are the peers whose shares this node holds.

    Raises SecureAggregationError, and the node reveals nothing, when a peer is claimed both
    survived and dropped, a claimed peer is not in ``held``, or fewer than ``threshold`` peers survived.
    """
    threshold = check_int("threshold", threshold, low=1)
    held_set, survived, gone = set(held), set(survivors), set(dropped)
    both = sorted(survived & gone)
    if both:
        raise SecureAggregationError(
            f"the coordinator asked for both the self-mask and the mask-key shares of {both}; an honest node reveals "
            "at most one of them per peer, so it refuses the request"
        )
    unknown = sorted((survived | gone) - held_set)
    if unknown:
        raise SecureAggregationError(f"the coordinator asked about {unknown}, whose shares this node does not hold")
    if len(survived) < threshold:
        raise SecureAggregationError(
            f"only {len(survived)} neighbours survived, fewer than the threshold {threshold}; the sum cannot be "
            "unmasked, so the node reveals nothing"
        )
    return Disclosure(self_mask_shares_of=tuple(sorted(survived)), mask_key_shares_of=tuple(sorted(gone)))
