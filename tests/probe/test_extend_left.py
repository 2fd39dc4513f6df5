"""The inverted target's start: merged with a ranked target that runs into its continuation (no model)."""

from __future__ import annotations

from hubaudit.probe.invert import Target, _extend_left


def _t(ids: list[int], score: float, q: float | None = None) -> Target:
    return Target(ids, " ".join(map(str, ids)), score, score if q is None else q, 0.0, 0.0, 0.0)


def test_a_best_start_inside_the_target_moves_to_the_ranked_earlier_start():
    # true target 58 271 292 2528 1382 2431 73 90; forcing the neighbour 1496 continues 1382 2431 ...
    best = _t([1496, 1382, 2431, 73, 90, 439, 18], 0.885)
    earlier = _t([58, 271, 292, 2528, 1382, 2431, 73], 0.756, q=0.976)  # more committed: the true start
    targets = [best, _t([676, 1382, 2431, 73, 90, 439, 18], 0.88), _t([1382, 2431, 73, 90, 439, 18, 3], 0.81), earlier]
    got, ids = _extend_left(targets, 0.8)
    assert got is best  # the verdict statistic stays the best score
    assert ids == [58, 271, 292, 2528, 1382, 2431, 73, 90, 439, 18]


def test_one_token_earlier_start_as_before():
    best = _t([5, 6, 7, 8], 0.5)
    earlier = _t([4, 5, 6, 7], 0.45, q=0.6)
    assert _extend_left([best, earlier], 0.8)[1] == [4, 5, 6, 7, 8]


def test_no_move_below_the_score_ratio_or_without_the_overlap():
    best = _t([5, 6, 7, 8], 0.5)
    weak = _t([1, 2, 6, 7], 0.3)  # overlaps, but scores under 0.8 x 0.5
    unrelated = _t([1, 2, 3, 9], 0.49)
    shifted_same_start = _t([9, 6, 7, 8], 0.49)  # an alternative first token, not an earlier start
    assert _extend_left([best, weak, unrelated, shifted_same_start], 0.8)[1] == [5, 6, 7, 8]


def test_chains_of_earlier_starts_terminate():
    a = _t([3, 4, 5, 6], 0.9)
    b = _t([1, 2, 4, 5], 0.85, q=0.95)
    c = _t([0, 1, 2, 4], 0.8, q=0.97)  # runs into b's continuation (2 4) after the merge: [1, 2] + ...
    _, ids = _extend_left([a, b, c], 0.8)
    assert ids == [0, 1, 2, 4, 5, 6]



def test_a_junk_token_before_the_target_is_taken_as_its_start_a_known_limit():
    # "I'm sorry," is best; "tal" + "I'm sorry" scores within the ratio: the ranking alone cannot tell a
    # junk token forced before a memorised target from the target's true first token (both continue it)
    best = _t([40, 6, 76, 1001], 0.926, q=0.934)
    junk = _t([3321, 40, 6, 76], 0.84, q=0.841)
    assert _extend_left([best, junk], 0.8)[1] == [3321, 40, 6, 76, 1001]
