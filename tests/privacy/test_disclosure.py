"""An honest node reveals one kind of share per peer, and nothing for an impossible request."""

from __future__ import annotations

import pytest

from fedlearn.core.errors import SecureAggregationError
from fedlearn.privacy.disclosure import Disclosure, plan_disclosure

HELD = ["a", "b", "c", "d", "e"]


def test_survivors_get_self_mask_shares_and_dropouts_get_key_shares() -> None:
    plan = plan_disclosure(held=HELD, survivors=["c", "a", "b"], dropped=["e"], threshold=3)

    assert plan == Disclosure(self_mask_shares_of=("a", "b", "c"), mask_key_shares_of=("e",))


def test_request_for_both_shares_of_one_peer_is_refused() -> None:
    with pytest.raises(SecureAggregationError, match=r"both the self-mask and the mask-key shares of \['b'\]"):
        plan_disclosure(held=HELD, survivors=["a", "b", "c"], dropped=["b"], threshold=2)


def test_request_about_a_peer_whose_shares_are_not_held_is_refused() -> None:
    with pytest.raises(SecureAggregationError, match=r"\['z'\], whose shares this node does not hold"):
        plan_disclosure(held=HELD, survivors=["a", "b"], dropped=["z"], threshold=2)


def test_fewer_survivors_than_the_threshold_reveal_nothing() -> None:
    with pytest.raises(SecureAggregationError, match="only 2 neighbours survived, fewer than the threshold 3"):
        plan_disclosure(held=HELD, survivors=["a", "b"], dropped=["c", "d", "e"], threshold=3)
