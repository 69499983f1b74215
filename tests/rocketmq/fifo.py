"""FIFO through a georouter region's RocketMQ 5 access point with the official RocketMQ 5
Python SDK, unchanged: a producer sends FIFO messages in two message groups, interleaved;
a SimpleConsumer receives and acknowledges them.

Usage: fifo.py ENDPOINT TOPIC GROUP PER_GROUP [SEND [TAKE]]
SEND 0 skips producing (default 1); the consumer stops after acknowledging TAKE messages
(default all, 2 * PER_GROUP).
Prints one JSON object: {"received": [[message group, sequence], ...]} in receipt order.
"""

import json
import sys
import time

from rocketmq import (
    ClientConfiguration,
    Credentials,
    FilterExpression,
    Message,
    Producer,
    SimpleConsumer,
)


def main():
    endpoint, topic, group, per_group = sys.argv[1:5]
    per_group = int(per_group)
    send = len(sys.argv) <= 5 or sys.argv[5] != "0"
    take = int(sys.argv[6]) if len(sys.argv) > 6 else 2 * per_group
    config = ClientConfiguration(endpoint, Credentials())
    producer = Producer(config, (topic,))
    producer.startup()
    try:
        for seq in range(per_group if send else 0):
            for message_group in ("g1", "g2"):
                m = Message()
                m.topic = topic
                m.body = f"{message_group}:{seq}".encode()
                m.message_group = message_group
                producer.send(m)
    finally:
        producer.shutdown()
    consumer = SimpleConsumer(config, group, {topic: FilterExpression("*")}, await_duration=2)
    consumer.startup()
    received = []
    try:
        deadline = time.time() + 60
        while len(received) < take and time.time() < deadline:
            for m in consumer.receive(16, 30):
                if len(received) == take:
                    break  # left in flight, as a consumer that dies
                message_group, seq = m.body.decode().split(":")
                received.append([message_group, int(seq), m.message_group])
                consumer.ack(m)
    finally:
        consumer.shutdown()
    print(json.dumps({"received": received}), flush=True)


if __name__ == "__main__":
    main()
