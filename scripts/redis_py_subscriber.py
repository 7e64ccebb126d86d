#!/usr/bin/env python3
"""A plain redis-py keyevent subscriber, the baseline of the keyspace
firehose benchmark (examples/bench_keyspace.rs).

psubscribes `__keyevent@*__:set`, counts messages, and exits after
`--silence` seconds without one (or `--max-seconds` in all), printing one
JSON line: the count, the wall-clock times of the first and last message,
and whether the server closed the connection.

Needs redis-py: `pip install redis`.
"""

import argparse
import json
import resource
import sys
import time

import redis


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pattern", default="__keyevent@*__:set")
    p.add_argument("--silence", type=float, default=5.0)
    p.add_argument("--max-seconds", type=float, default=300.0)
    a = p.parse_args()

    r = redis.Redis(host="127.0.0.1", port=a.port, client_name="pybench")
    ps = r.pubsub(ignore_subscribe_messages=True)
    ps.psubscribe(a.pattern)
    # Consume the psubscribe confirmation, then say we are ready.
    deadline = time.time() + 10
    while time.time() < deadline and ps.get_message(timeout=0.1) is None and not ps.subscribed:
        pass
    print("ready", flush=True)

    count = 0
    first = last = None
    disconnected = None
    start = time.time()
    last_seen = start
    while True:
        now = time.time()
        if now - last_seen > a.silence or now - start > a.max_seconds:
            break
        try:
            msg = ps.get_message(timeout=0.5)
        except (redis.ConnectionError, OSError) as e:
            disconnected = str(e)
            break
        if msg is None:
            continue
        count += 1
        last_seen = time.time()
        if first is None:
            first = last_seen
        last = last_seen
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "count": count,
                "first": first,
                "last": last,
                "disconnected": disconnected,
                "cpu": usage.ru_utime + usage.ru_stime,
                "maxrss_mib": usage.ru_maxrss / 1024.0,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
