"""Checks a Slack incoming-webhook payload (JSON on stdin) with Slack's own
Block Kit models (PyPI slack_sdk): every block must parse into a known block
class and pass its validation (lengths, required fields, text object types).
Prints "ok" or the problems, one per line; exits 1 on a problem."""

import json
import sys

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

payload = json.load(sys.stdin)
problems = []
if not isinstance(payload.get("text"), str) or not payload["text"]:
    problems.append("no top-level text (the notification fallback)")
blocks = payload.get("blocks", [])
if not isinstance(blocks, list) or not blocks:
    problems.append("no blocks")
    blocks = []
if len(blocks) > 50:
    problems.append(f"{len(blocks)} blocks: a message holds at most 50")
for n, raw in enumerate(blocks):
    block = Block.parse(raw)
    if block is None or type(block) is Block:
        problems.append(f"block {n}: unknown type {raw.get('type')!r}")
        continue
    try:
        block.validate_json()
    except SlackObjectFormationError as e:
        problems.append(f"block {n} ({raw.get('type')}): {e}")
        continue
    # What slack_sdk would send for this block must be what relive sent:
    # a field the model does not know is dropped, which means Slack does
    # not know it either.
    back = block.to_dict()
    for key in raw:
        if key not in back:
            problems.append(f"block {n} ({raw.get('type')}): unknown field {key!r}")
print("\n".join(problems) if problems else "ok")
sys.exit(1 if problems else 0)
