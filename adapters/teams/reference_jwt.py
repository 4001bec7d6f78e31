"""Bot Framework's own token validation (PyPI botframework-connector), as a reference for
ours: the same tokens must be accepted and refused by both.

usage: reference_jwt.py METADATA_URL APP_ID < cases.jsonl

Each input line is {"authorization": ..., "channel": ..., "service_url": ...}; each output
line is "ok" or "refused: <why>".
"""
import asyncio
import json
import sys

from botframework.connector.auth import ChannelValidation, SimpleCredentialProvider


async def check(case, credentials):
    try:
        await ChannelValidation.authenticate_channel_token_with_service_url(
            case["authorization"], credentials, case["service_url"], case["channel"]
        )
        return "ok"
    except Exception as e:  # the SDK raises PermissionError, jwt errors and others
        return "refused: " + (str(e).splitlines() or [type(e).__name__])[0]


async def main():
    ChannelValidation.open_id_metadata_endpoint = sys.argv[1]
    credentials = SimpleCredentialProvider(sys.argv[2], "")
    for line in sys.stdin:
        if line.strip():
            print(await check(json.loads(line), credentials), flush=True)


asyncio.run(main())
