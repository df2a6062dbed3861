"""OpenAssistant message trees: every root-to-leaf path is an episode.

    {"message_tree_id": "t", "prompt": {"role": "prompter", "text": "Hi", "replies": [
        {"role": "assistant", "text": "Hello!", "rank": 0, "replies": []},
        {"role": "assistant", "text": "What?", "rank": 1, "replies": []}]}}
    -> group g: [user "Hi", assistant "Hello!" (optimal, +1)] rank 0 | [user "Hi", assistant "What?" (suboptimal, -1)] rank 1

Siblings (replies to the same message) share a `group_id`; a ranked reply that has replies of
its own also ends an episode there, so that each group holds all the siblings it compares. Each assistant move carries the
rank it had among its siblings: rank 0 is `optimal`, others `suboptimal`, and rank r of n
ranked siblings gets reward 1 - 2r/(n-1) on [-1, 1]. Unranked replies stay `unknown`, without
reward. A path that ends in a prompter message ends at that message's parent. Deleted messages
and their subtrees are left out and counted in meta.
"""

from __future__ import annotations

import copy

from gamelog.errors import RecordError
from gamelog.formats.common import Context, episode, normalise_role, text_of, turn

MAX_DEPTH = 1000


def convert_oasst(record: dict, ctx: Context) -> list[dict]:
    root = record.get("prompt", record)
    if not isinstance(root, dict) or "text" not in root:
        raise RecordError("missing_field", "an OpenAssistant tree needs a root message ('prompt') with 'text' and 'replies'.")
    tree_id = record.get("message_tree_id") or root.get("message_id") or ctx.location
    paths, deleted = tree_paths(root, ctx)
    episodes, seen = [], set()
    for path in paths:
        while path and path[-1][0]["player"] == 1:
            path = path[:-1]
        key = tuple(id(node) for _, node, _ in path)
        if not path or key in seen:
            continue
        seen.add(key)
        episodes.append(path_episode(ctx, path, tree_id, len(seen) - 1, deleted))
    if not episodes:
        raise RecordError("no_player2_move", "the tree has no assistant reply.")
    return episodes


def tree_paths(root: dict, ctx: Context) -> tuple[list[list[tuple[dict, dict, dict | None]]], int]:
    """All root-to-leaf paths as lists of (turn, node, parent); iterative, so deep trees are safe."""
    paths, deleted = [], 0
    stack = [([], root, None, "prompt", 1)]
    while stack:
        prefix, node, parent, where, siblings = stack.pop()
        if len(prefix) >= MAX_DEPTH:
            raise RecordError("too_deep", f"{where}: the tree is deeper than {MAX_DEPTH} messages.")
        ident = node.get("message_id")
        if ident is not None and any(n.get("message_id") == ident for _, n, _ in prefix):
            raise RecordError("reply_cycle", f"{where}: message {ident} appears again among its own ancestors; the tree points back on itself.")
        path = prefix + [(node_turn(node, ctx, where), node, parent)]
        replies = node.get("replies") or []
        if not isinstance(replies, list):
            raise RecordError("wrong_type", f"{where}.replies should be a list.")
        live = [r for r in replies if not (isinstance(r, dict) and r.get("deleted") is True)]
        deleted += len(replies) - len(live)
        if not live or (siblings > 1 and path[-1][0]["player"] == 2):
            paths.append(path)  # a leaf, or a reply compared with its siblings: its group needs it
        for i in reversed(range(len(live))):
            if not isinstance(live[i], dict):
                raise RecordError("wrong_type", f"{where}.replies[{i}] should be a message object.")
            stack.append((path, live[i], node, f"{where}.replies[{i}]", len(live)))
    return paths, deleted


def node_turn(node: dict, ctx: Context, where: str) -> dict:
    role = normalise_role(node.get("role"), ctx, f"{where}: ")
    text = text_of(node.get("text"), f"{where}.text")
    if not text.strip():
        raise RecordError("empty_content", f"{where}: the message text is empty.")
    return turn(role, text)


def sibling_reward(node: dict, parent: dict | None) -> float | None:
    rank = node.get("rank")
    if rank is None or parent is None:
        return None
    ranked = [r for r in parent.get("replies") or [] if isinstance(r, dict) and r.get("rank") is not None and not r.get("deleted")]
    n = len(ranked)
    return None if n < 2 else 1.0 - 2.0 * int(rank) / (n - 1)


def path_episode(ctx: Context, path, tree_id: str, index: int, deleted: int) -> dict:
    turns = []
    for t, node, parent in path:
        t = copy.copy(t)
        if t["player"] == 2 and isinstance(node.get("rank"), int):
            t["optimality"] = "optimal" if node["rank"] == 0 else "suboptimal"
            t["reward"] = sibling_reward(node, parent)
        turns.append(t)
    _, last, parent = path[-1]
    rank = last.get("rank") if isinstance(last.get("rank"), int) else None
    group = f"{tree_id}/{parent.get('message_id', '') if parent else ''}"
    meta = {"message_tree_id": tree_id, "message_ids": [node.get("message_id") for _, node, _ in path]}
    if deleted:
        meta["deleted_messages_skipped"] = deleted
    return episode(ctx, turns, regime="preference", task="chat", branch=f"path {index}", group_id=group, rank=rank, outcome=turns[-1]["reward"], meta=meta)
