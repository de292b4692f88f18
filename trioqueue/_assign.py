"""Sticky, balanced assignment of partitions to members (a pure function).

Every member computes the same assignment from the same inputs (the live members and
the current lease owners), so no coordinator is needed: each member acquires what is
assigned to it and releases what is not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["assign"]


def assign(
    partitions: Sequence[int],
    members: Sequence[str],
    current: Mapping[int, str | None],
) -> dict[int, str]:
    """Assign every partition to exactly one member.

    Balanced within one (each member gets ``n // m`` or ``n // m + 1``), and sticky:
    a partition stays with its current owner whenever that owner is live and under
    its quota, so a member joining or leaving moves as few partitions as possible.
    Members with more current partitions get the larger quotas first; ties break by
    member id, so the result is deterministic.
    """
    if not members:
        return {}
    live = sorted(set(members))
    parts = sorted(set(partitions))
    n, m = len(parts), len(live)
    held: dict[str, list[int]] = {member: [] for member in live}
    for p in parts:
        owner = current.get(p)
        if owner in held:
            held[owner].append(p)
    # Quotas: the n % m members with the most current partitions get one extra.
    order = sorted(live, key=lambda member: (-len(held[member]), member))
    quota = {member: n // m + (1 if i < n % m else 0) for i, member in enumerate(order)}
    result: dict[int, str] = {}
    for member in live:
        for p in held[member][: quota[member]]:
            result[p] = member
    free = [p for p in parts if p not in result]
    for member in order:
        take = quota[member] - sum(1 for owner in result.values() if owner == member)
        for _ in range(take):
            result[free.pop(0)] = member
    return result
