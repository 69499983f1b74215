"""Sends delay messages to a georouter region's RocketMQ 5 access point with the official
RocketMQ 5 Python SDK (rocketmq-python-client), unchanged, recalls one before it is due, and
receives the others with a SimpleConsumer when they come due.

Usage: delay.py ENDPOINT TOPIC GROUP COUNT DELAY_MS
Sends COUNT messages due DELAY_MS from now, and one more that it recalls at once (then
recalls it again, which must fail); receives until COUNT messages arrived (60 s at most).
Prints one JSON object: {"due_ms", "received": [{"index", "at_ms"}], "recalled",
"recall_again": error}.
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


def now_ms():
    return int(time.time() * 1000)


def message(topic, index, due_ms):
    m = Message()
    m.topic = topic
    m.body = f"delayed {index}".encode()
    m.add_property("index", str(index))
    m.delivery_timestamp = due_ms
    return m


def main():
    endpoint, topic, group = sys.argv[1:4]
    count, delay_ms = int(sys.argv[4]), int(sys.argv[5])
    config = ClientConfiguration(endpoint, Credentials())
    producer = Producer(config, (topic,))
    producer.startup()
    consumer = SimpleConsumer(config, group, {topic: FilterExpression("*")}, await_duration=5)
    consumer.startup()
    try:
        due_ms = now_ms() + delay_ms
        for index in range(count):
            producer.send(message(topic, index, due_ms))
        doomed = producer.send(message(topic, count, due_ms))
        recalled = producer.recall_message(topic, doomed.recall_handle)
        try:
            producer.recall_message(topic, doomed.recall_handle)
            recall_again = None
        except Exception as error:  # the SDK raises its own exception types
            recall_again = str(error)
        received = {}
        deadline = time.time() + 60
        while len(received) < count and time.time() < deadline:
            for m in consumer.receive(32, 30):
                received[m.message_id] = {
                    "index": int(m.properties.get("index", "-1")),
                    "at_ms": now_ms(),
                }
                consumer.ack(m)
        # The recalled one never comes: wait past its time once more.
        while now_ms() < due_ms + 2000:
            for m in consumer.receive(32, 30):
                received[m.message_id] = {
                    "index": int(m.properties.get("index", "-1")),
                    "at_ms": now_ms(),
                }
                consumer.ack(m)
        print(
            json.dumps(
                {
                    "due_ms": due_ms,
                    "received": list(received.values()),
                    "recalled": recalled,
                    "recall_again": recall_again,
                }
            ),
            flush=True,
        )
    finally:
        consumer.shutdown()
        producer.shutdown()


if __name__ == "__main__":
    main()
