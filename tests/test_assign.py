"""Properties of the partition assignment function."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from trioqueue._assign import assign

member_ids = st.lists(
    st.text("abcdefgh", min_size=1, max_size=4), min_size=1, max_size=8, unique=True
)


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[int], list[str], dict[int, str | None]]:
    n = draw(st.integers(1, 40))
    members = draw(member_ids)
    others = draw(st.lists(st.text("xyz", min_size=1, max_size=2), max_size=3))
    owners = st.sampled_from([None, *members, *others])
    current = {p: draw(owners) for p in range(n)}
    return list(range(n)), members, current


def counts(result: dict[int, str], members: list[str]) -> Counter[str]:
    c: Counter[str] = Counter({m: 0 for m in members})
    c.update(result.values())
    return c


@given(scenario())
def test_every_partition_has_exactly_one_live_owner(s: tuple) -> None:  # type: ignore[type-arg]
    """All partitions are assigned, each to a live member."""
    parts, members, current = s
    result = assign(parts, members, current)
    assert sorted(result) == parts
    assert set(result.values()) <= set(members)


@given(scenario())
def test_balanced_within_one(s: tuple) -> None:  # type: ignore[type-arg]
    """No member has more than one partition more than another."""
    parts, members, current = s
    c = counts(assign(parts, members, current), members)
    assert max(c.values()) - min(c.values()) <= 1


@given(scenario())
def test_deterministic_and_stable(s: tuple) -> None:  # type: ignore[type-arg]
    """Same inputs (in any order) give the same result; applying it again moves nothing."""
    parts, members, current = s
    first = assign(parts, members, current)
    assert assign(list(reversed(parts)), list(reversed(members)), current) == first
    assert assign(parts, members, first) == first


@given(scenario(), st.text("pqr", min_size=1, max_size=3))
def test_minimal_movement_when_one_joins(s: tuple, newcomer: str) -> None:  # type: ignore[type-arg]
    """A joining member takes only its fair share; nothing else moves."""
    parts, members, _ = s
    if newcomer in members:
        return
    before = assign(parts, members, {})
    after = assign(parts, [*members, newcomer], before)
    moved = [p for p in parts if before[p] != after[p]]
    assert all(after[p] == newcomer for p in moved)
    assert len(moved) == counts(after, [*members, newcomer])[newcomer]
    assert len(moved) <= len(parts) // (len(members) + 1) + 1


@given(scenario(), st.data())
def test_minimal_movement_when_one_leaves(s: tuple, data: st.DataObject) -> None:  # type: ignore[type-arg]
    """When a member leaves, only its partitions move (plus at most one per member to rebalance)."""
    parts, members, _ = s
    if len(members) < 2:
        return
    before = assign(parts, members, {})
    gone = data.draw(st.sampled_from(members))
    rest = [m for m in members if m != gone]
    after = assign(parts, rest, {p: o for p, o in before.items() if o != gone})
    moved = [p for p in parts if before[p] != after[p]]
    orphaned = [p for p in parts if before[p] == gone]
    assert set(orphaned) <= set(moved)
    assert len(moved) - len(orphaned) <= len(rest)
