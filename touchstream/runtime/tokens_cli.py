"""``touchstream tokens issue|revoke|list``: the customer API's bearer tokens, kept hashed in
the Redis every worker reads (TOUCHSTREAM_REDIS_URL and its credentials, as the worker's)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson
from redis.exceptions import RedisError

from touchstream.config.settings import load_redis_settings, mask_url
from touchstream.serving import tokens
from touchstream.serving.redis_client import redis_client


def run_tokens(args: argparse.Namespace) -> int:
    settings = load_redis_settings()
    try:
        return asyncio.run(_run(args, settings))
    except tokens.TokenError as exc:
        print(f"touchstream tokens: {exc}", file=sys.stderr)
        return 2
    except (RedisError, OSError) as exc:
        print(
            f"touchstream tokens: Redis at {mask_url(settings.redis_url)}: {exc}", file=sys.stderr
        )
        return 1


async def _run(args: argparse.Namespace, settings: Any) -> int:
    redis = redis_client(settings)
    try:
        if args.tokens_command == "issue":
            token, record = tokens.new_token(args.name, args.scope or ())
            await tokens.store_record(redis, record)
            print(f"id: {record.id}", file=sys.stderr)
            print(f"name: {record.name}", file=sys.stderr)
            print(f"scopes: {' '.join(sorted(record.scopes))}", file=sys.stderr)
            print("the token, shown this once (only its SHA-256 is stored):", file=sys.stderr)
            print(token, flush=True)
            return 0
        if args.tokens_command == "revoke":
            if await tokens.revoke(redis, args.id):
                print(
                    f"revoked {args.id}: every worker refuses it within"
                    f" TOUCHSTREAM_API_TOKEN_CACHE_S ({settings.api_token_cache_s:g}s)"
                )
                return 0
            print(f"touchstream tokens: no token with id {args.id}", file=sys.stderr)
            return 1
        records = await tokens.load_records(redis)
        listed = sorted((r.public() for r in records.values()), key=lambda r: r["created_at"])
        if args.json:
            print(orjson.dumps(listed).decode())
        else:
            for r in listed:
                print(f"{r['id']}  {r['created_at']}  {','.join(r['scopes'])}  {r['name']}")
        return 0
    finally:
        await redis.aclose()


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "tokens",
        help="bearer tokens of the customer API: issue, revoke, list",
        description="Tokens of the customer API (TOUCHSTREAM_WEB_PORT), stored hashed in the "
        "Redis of TOUCHSTREAM_REDIS_URL. Scopes: profile:read (GET /customers/{id}), lookup "
        "(POST /customers/lookup), admin (every scope).",
    )
    actions = p.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    issue = actions.add_parser("issue", help="a new token, printed once on stdout")
    issue.add_argument(
        "--scope",
        action="append",
        choices=tokens.SCOPES,
        required=True,
        help="a scope of the token (repeat for several)",
    )
    issue.add_argument("--name", required=True, help="who holds it (shown in the audit log)")
    revoke = actions.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("id", help="the token's id (`touchstream tokens list`)")
    listing = actions.add_parser("list", help="ids, names, scopes, creation times; no secrets")
    listing.add_argument("--json", action="store_true", help="as a JSON array")
