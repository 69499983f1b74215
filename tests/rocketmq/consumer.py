"""Consumes through a georouter region's RocketMQ 5 access point with the official RocketMQ 5
Python SDK's SimpleConsumer (rocketmq-python-client), unchanged.

Usage: consumer.py ENDPOINT TOPIC GROUP FILTER EXPECTED
Receives until EXPECTED messages arrived (60 s at most), with a tag filter (FILTER "sql:..."
is a SQL92 filter instead); acknowledges
those whose "index" property is even at once; makes the others visible again after 1 s
(change_invisible_duration), receives them a second time and acknowledges them; then one
more receive must find nothing. Prints one JSON object:
{"received": [{"id", "index", "tag", "body", "attempt"}], "again": [...], "left": n}.
"""

import json
import sys
import time

from rocketmq import ClientConfiguration, Credentials, FilterExpression, SimpleConsumer
from rocketmq.grpc_protocol import FilterType


def view(m):
    return {
        "id": m.message_id,
        "index": int(m.properties.get("index", "-1")),
        "tag": m.tag,
        "body": m.body.decode(),
        "attempt": m.delivery_attempt,
    }


def main():
    endpoint, topic, group, filter_text, expected = sys.argv[1:6]
    expected = int(expected)
    if filter_text.startswith("sql:"):
        expression = FilterExpression(filter_text[4:], FilterType.SQL)
    else:
        expression = FilterExpression(filter_text)
    consumer = SimpleConsumer(
        ClientConfiguration(endpoint, Credentials()),
        group,
        {topic: expression},
        await_duration=5,
    )
    consumer.startup()
    try:
        deadline = time.time() + 60
        received, later = {}, []
        while len(received) < expected and time.time() < deadline:
            for m in consumer.receive(32, 30):
                received[m.message_id] = view(m)
                if int(m.properties.get("index", "0")) % 2 == 0:
                    consumer.ack(m)
                else:
                    consumer.change_invisible_duration(m, 1)
                    later.append(m.message_id)
        again = {}
        while len(again) < len(later) and time.time() < deadline:
            for m in consumer.receive(32, 30):
                again[m.message_id] = view(m)
                consumer.ack(m)
        left = consumer.receive(32, 30)
        print(
            json.dumps(
                {
                    "received": list(received.values()),
                    "again": list(again.values()),
                    "left": len(left),
                }
            ),
            flush=True,
        )
    finally:
        consumer.shutdown()


if __name__ == "__main__":
    main()
