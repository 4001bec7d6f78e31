"""Independent checks of what the Slack adapter emits, with Slack's own SDK.

usage: validate.py MANIFEST SCHEMA PAYLOAD_DIR

- The app manifest against Slack's manifest JSON Schema (jsonschema).
- Every view (`*.view.json`) and message (`*.blocks.json`) with slack_sdk's models:
  parsed, validated against Block Kit's limits, and compared with the original after a
  round trip, so no field is unknown to Slack's SDK or silently dropped.
"""
import json
import pathlib
import sys

import jsonschema
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View


def same(a, b, where):
    if a != b:
        raise SystemExit(f"{where}: slack_sdk round trip differs:\n ours: {json.dumps(a, sort_keys=True)}\n sdk:  {json.dumps(b, sort_keys=True)}")


def blocks(items, where):
    parsed = Block.parse_all(items)
    for i, (b, original) in enumerate(zip(parsed, items)):
        if b is None:
            raise SystemExit(f"{where}: block {i} is not a Block Kit block")
        b.validate_json()
        same(original, b.to_dict(), f"{where} block {i}")


def main(manifest, schema, payloads):
    jsonschema.validate(json.loads(pathlib.Path(manifest).read_text()), json.loads(pathlib.Path(schema).read_text()))
    checked = 0
    for f in sorted(pathlib.Path(payloads).glob("*.json")):
        data = json.loads(f.read_text())
        if f.name.endswith(".view.json"):
            view = View(**data)
            view.validate_json()
            same(data, view.to_dict(), f.name)
            blocks(data["blocks"], f.name)
        elif f.name.endswith(".blocks.json"):
            if len(data) > 50:
                raise SystemExit(f"{f.name}: {len(data)} blocks; a message holds at most 50")
            blocks(data, f.name)
        else:
            continue
        checked += 1
    if checked == 0:
        raise SystemExit("no payloads to check")
    print(f"manifest valid; {checked} payloads valid and round-trip through slack_sdk")


if __name__ == "__main__":
    main(*sys.argv[1:4])
