"""Best-fit decreasing bin packing of segment lengths into rows of at most `capacity` tokens.

Segments are placed longest first, each into the open row with the least room that still fits
it (a new row when none does). Rows with the same room are kept in a list per room size and the
sizes in a sorted list, so each placement is a bisection: O(n log n) over the whole window, not
per small batch. Ties break by position, so the result is deterministic.
"""

from __future__ import annotations

import bisect
from collections import defaultdict


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Rows as lists of segment indexes, in the order rows were opened."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    rooms: list[int] = []  # sorted distinct room sizes that some open row has
    by_room: dict[int, list[int]] = defaultdict(list)
    for index in order:
        length = lengths[index]
        if length > capacity or length <= 0:
            raise ValueError(f"segment {index} has length {length}, outside 1..{capacity}")
        at = bisect.bisect_left(rooms, length)
        if at < len(rooms):
            room = rooms[at]
            row = by_room[room].pop(0)
            if not by_room[room]:
                rooms.pop(at)
        else:
            room, row = capacity, len(rows)
            rows.append([])
        rows[row].append(index)
        left = room - length
        if left > 0:
            if not by_room[left]:
                bisect.insort(rooms, left)
            by_room[left].append(row)
    return rows
