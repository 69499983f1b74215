"""Receives through a georouter region's RocketMQ 5 access point with the official RocketMQ 5
Python SDK's SimpleConsumer, unchanged, and acknowledges only some messages, as a consumer
that fails in the middle of its work.

Usage: ack_some.py ENDPOINT TOPIC GROUP COUNT ACK_BELOW
Receives until COUNT messages arrived (60 s at most, each invisible for 60 s), acknowledges
those whose "index" property is below ACK_BELOW and leaves the others in flight.
Prints one JSON object: {"received": n, "acked": [index]}.
"""

import json
import sys
import time

from rocketmq import ClientConfiguration, Credentials, FilterExpression, SimpleConsumer


def main():
    endpoint, topic, group = sys.argv[1:4]
    count, ack_below = int(sys.argv[4]), int(sys.argv[5])
    consumer = SimpleConsumer(
        ClientConfiguration(endpoint, Credentials()),
        group,
        {topic: FilterExpression("*")},
        await_duration=5,
    )
    consumer.startup()
    try:
        received, acked = 0, []
        deadline = time.time() + 60
        while received < count and time.time() < deadline:
            for m in consumer.receive(32, 60):
                received += 1
                index = int(m.properties.get("index", "-1"))
                if index < ack_below:
                    consumer.ack(m)
                    acked.append(index)
        print(json.dumps({"received": received, "acked": sorted(acked)}), flush=True)
    finally:
        consumer.shutdown()


if __name__ == "__main__":
    main()
