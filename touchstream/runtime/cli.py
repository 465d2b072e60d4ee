"""``touchstream`` command line: worker, demo, simulate, bench, dlq replay, tokens, kafka."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from touchstream.errors import AccessDenied, ConfigError
from touchstream.runtime.brokers import EMBEDDED, KAFKA, KINDS

DESCRIPTION = """\
Touchstream: real-time customer engagement for retail on your own Kafka.

Configuration comes from TOUCHSTREAM_* environment variables and a TOML rules file
(TOUCHSTREAM_RULES or --rules); a bad value stops start-up naming the key.
"""


def _add_rules(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rules",
        metavar="PATH",
        help="TOML rules file (default: TOUCHSTREAM_RULES, else the shipped default rules)",
    )


def _add_broker(p: argparse.ArgumentParser, default: str, why: str) -> None:
    p.add_argument(
        "--broker",
        choices=KINDS,
        default=default,
        help=f"the broker to start on loopback (default {default}: {why})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="touchstream",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = sub.add_parser(
        "worker",
        help="run a worker (production entry point; env + rules file)",
        description="Run one Touchstream worker against the Kafka and Redis named by "
        "TOUCHSTREAM_BROKER and TOUCHSTREAM_REDIS_URL. Add workers to scale out.",
    )
    _add_rules(worker)

    demo = sub.add_parser(
        "demo",
        help="broker + Redis + worker + traffic simulator, then a summary",
        description="Start a broker (the embedded Kafka-protocol broker, or Apache Kafka with "
        "--broker kafka) and Redis on free loopback ports, a worker, and simulated POS and web "
        "shoppers (with some malformed events). Prints what happens while it runs and a "
        "summary at the end.",
    )
    _add_rules(demo)
    _add_broker(
        demo,
        EMBEDDED,
        "the embedded Tansu, which needs nothing installed; kafka: Apache Kafka, which needs "
        "a JDK 17 and Maven",
    )
    demo.add_argument("--duration", type=float, default=60.0, help="seconds of traffic (60)")
    demo.add_argument("--rate", type=float, default=200.0, help="events per second (200)")
    demo.add_argument("--customers", type=int, default=500, help="simulated shoppers (500)")
    demo.add_argument(
        "--malformed", type=float, default=0.02, help="share of malformed events (0.02)"
    )
    demo.add_argument("--summary-json", metavar="PATH", help="also write the summary as JSON")
    demo.add_argument(
        "--no-traffic",
        action="store_true",
        help="only run broker, Redis and a worker until SIGINT/SIGTERM",
    )
    demo.add_argument("--seed", type=int, default=7, help="random seed of the simulator")

    sim = sub.add_parser(
        "simulate",
        help="produce synthetic shopper traffic into any broker",
        description="Produce simulated touchpoint events to a topic at a chosen rate.",
    )
    sim.add_argument(
        "--broker",
        default=None,
        help="HOST:PORT[,...] (default: TOUCHSTREAM_BROKER or 127.0.0.1:9092)",
    )
    sim.add_argument("--topic", default="touchpoints")
    sim.add_argument("--rate", type=float, default=200.0, help="events per second (0 = max)")
    sim.add_argument("--duration", type=float, default=None, help="seconds (default: forever)")
    sim.add_argument("--events", type=int, default=None, help="stop after this many events")
    sim.add_argument("--customers", type=int, default=500)
    sim.add_argument(
        "--malformed",
        type=float,
        default=0.0,
        help="share of malformed events, kinds drawn in turn (0)",
    )
    sim.add_argument(
        "--malformed-kind",
        action="append",
        default=None,
        metavar="KIND",
        help="restrict malformed events to these kinds (repeat)",
    )
    sim.add_argument("--seed", type=int, default=7)

    bench = sub.add_parser(
        "bench",
        help="raw consume vs naive Faust vs the Touchstream pipeline",
        description="Measure, on one broker and one data set: (a) raw aiokafka+orjson "
        "consume, (b) a naive Faust agent with one table update per event, (c) the Touchstream "
        "pipeline; prints events/s, ratios, p50/p99 event-to-output latency and peak RSS, and "
        "which broker and version they were measured on.",
    )
    _add_rules(bench)
    _add_broker(
        bench,
        KAFKA,
        "Apache Kafka, the broker users run (needs a JDK 17 and Maven); embedded: Tansu, "
        "which needs nothing installed",
    )
    bench.add_argument("--events", type=int, default=50_000, help="events per phase (50000)")
    bench.add_argument("--customers", type=int, default=5_000)
    bench.add_argument(
        "--latency-seconds",
        type=float,
        default=10.0,
        help="length of the latency phase (10)",
    )
    bench.add_argument(
        "--latency-rate",
        type=float,
        default=None,
        metavar="EPS",
        help="events/s offered in the latency phase (default: half the settled throughput); "
        "a fixed rate compares latency between runs at the same load",
    )
    bench.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes of the pipeline, sharing its partitions (1)",
    )
    bench.add_argument("--json", metavar="PATH", help="also write the results as JSON")

    dlq = sub.add_parser("dlq", help="dead-letter queue tools")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    replay = dlq_sub.add_parser(
        "replay", help="re-submit DLQ records to touchpoints (after a fix or contract change)"
    )
    replay.add_argument("--broker", default=None)
    replay.add_argument(
        "--reason", action="append", default=None, help="only records with this reason (repeat)"
    )
    replay.add_argument("--max", type=int, default=None, help="at most this many records")
    replay.add_argument(
        "--from",
        dest="source",
        choices=("dlq", "quarantine"),
        default="dlq",
        help="dlq (default): touchpoints.dlq to touchpoints; quarantine: "
        "touchstream.quarantine, each record back to the topic and partition it came from",
    )
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="only check the records against the current validation and report; "
        "produce nothing, commit no offsets",
    )
    replay.add_argument("--json", action="store_true", help="with --dry-run: the report as JSON")
    _add_rules(replay)

    keys = sub.add_parser("keys", help="HMAC key set tools (docs/operations.md)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    rotate = keys_sub.add_parser(
        "rotate",
        help="re-key the stored email/phone digests to the newest key version",
        description="Move every email and phone alias in Redis from the key version before "
        "the newest one in TOUCHSTREAM_HMAC_KEYS to the newest, with the newest key alone. "
        "Idempotent. See docs/operations.md, 'Rotating the HMAC key'.",
    )
    rotate.add_argument(
        "--to", type=int, default=None, help="the version to move to (default: the newest)"
    )
    from touchstream.runtime.tokens_cli import add_parser as add_tokens

    add_tokens(sub)

    kafka = sub.add_parser(
        "kafka",
        help="Apache Kafka from Maven Central for tests, demo and bench (needs a JDK and mvn)",
    )
    kafka_sub = kafka.add_subparsers(dest="kafka_command", required=True, metavar="ACTION")
    kafka_sub.add_parser(
        "fetch", help="download the pinned Apache Kafka jars into the cache (once)"
    )
    run = kafka_sub.add_parser(
        "run",
        help="a single-node KRaft broker on a free loopback port until Ctrl-C/SIGTERM",
    )
    run.add_argument("--dir", default=None, help="log directory (default: a temporary one)")
    return parser


def _keys_rotate(to: int | None) -> int:
    import asyncio

    import orjson
    from aiokafka import AIOKafkaProducer

    from touchstream.config.settings import key, load_settings
    from touchstream.domain.identity import HmacKeys
    from touchstream.serving.redis_client import redis_client
    from touchstream.serving.rekey import rekey
    from touchstream.streams import topics
    from touchstream.streams.kafka_client import client_kwargs

    settings = load_settings()
    keys = HmacKeys(settings.hmac_key_set())
    version = keys.current if to is None else to
    if version < 2 or version not in keys.versions:
        raise ConfigError(
            key("hmac_keys"), f"--to {version}: needs a version 2..{keys.current} of the key set"
        )
    topic = settings.topic(topics.CUSTOMER_EVENTS)

    async def run() -> int:
        producer = AIOKafkaProducer(acks="all", **client_kwargs(settings))
        client = redis_client(settings)
        await producer.start()
        try:

            async def send(records: list[tuple[str, dict[str, object]]]) -> None:
                futures = [
                    await producer.send(topic, orjson.dumps(value), key=target.encode())
                    for target, value in records
                ]
                for future in futures:
                    await future

            report = await rekey(client, keys, version, send)
        finally:
            await producer.stop()
            await client.aclose()
        print(
            f"aliases moved to v{version}: {report.moved} (rekey records sent for "
            f"{report.customers} customers); already there: {report.already}; "
            f"under another version (not touched): {report.other}"
        )
        return 0 if report.other == 0 else 1

    return asyncio.run(run())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"touchstream: configuration error: {exc}", file=sys.stderr)
        return 2
    except AccessDenied as exc:
        print(f"touchstream: access denied: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "keys":
        return _keys_rotate(args.to)
    if args.command == "worker":
        from touchstream.config.settings import load_all
        from touchstream.runtime.worker import run_worker

        settings, rules = load_all(rules=args.rules)
        run_worker(settings, rules)
        return 0
    if args.command == "demo":
        from touchstream.runtime.demo import run_demo

        return run_demo(args)
    if args.command == "simulate":
        from touchstream.simulator.produce import run_simulate

        return run_simulate(args)
    if args.command == "bench":
        from touchstream.bench.runner import run_bench

        return run_bench(args)
    if args.command == "dlq":
        from touchstream.runtime.dlq_replay import run_replay

        return run_replay(args)
    if args.command == "tokens":
        from touchstream.runtime.tokens_cli import run_tokens

        return run_tokens(args)
    if args.command == "kafka":
        from touchstream.runtime.kafka_cli import run_kafka

        return run_kafka(args)
    raise AssertionError(args.command)  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
