"""Consumes through a georouter region's RocketMQ 5 access point with the official RocketMQ 5
Python SDK's PushConsumer (rocketmq-python-client), unchanged: its listener fails the first
delivery of every message whose "index" property is a multiple of 4 (the SDK hands it back
for a later attempt) and succeeds otherwise.

Usage: push.py ENDPOINT TOPIC GROUP EXPECTED
Prints one JSON object: {"attempts": {message index: [delivery attempts seen]}}.
"""

import json
import sys
import threading
import time

from rocketmq import (
    ClientConfiguration,
    ConsumeResult,
    Credentials,
    FilterExpression,
    MessageListener,
    PushConsumer,
)


class Listener(MessageListener):
    def __init__(self):
        self.lock = threading.Lock()
        self.attempts = {}
        self.done = set()

    def consume(self, message):
        index = int(message.properties.get("index", "-1"))
        with self.lock:
            self.attempts.setdefault(index, []).append(message.delivery_attempt)
            if index % 4 == 0 and message.delivery_attempt == 1:
                return ConsumeResult.FAILURE
            self.done.add(index)
        return ConsumeResult.SUCCESS


def main():
    endpoint, topic, group, expected = sys.argv[1:5]
    expected = int(expected)
    listener = Listener()
    consumer = PushConsumer(
        ClientConfiguration(endpoint, Credentials()),
        group,
        listener,
        {topic: FilterExpression("*")},
    )
    consumer.startup()
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            with listener.lock:
                if len(listener.done) >= expected:
                    break
            time.sleep(0.1)
        # Give an unexpected extra delivery (an acknowledgement lost) a moment to show.
        time.sleep(1)
        with listener.lock:
            attempts = {str(k): v for k, v in sorted(listener.attempts.items())}
        print(json.dumps({"attempts": attempts}), flush=True)
    finally:
        consumer.shutdown()


if __name__ == "__main__":
    main()
