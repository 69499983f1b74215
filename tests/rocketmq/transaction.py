"""Sends transaction messages to a georouter region's RocketMQ 5 access point with the
official RocketMQ 5 Python SDK (rocketmq-python-client), unchanged, with a transaction
checker, and receives what was committed with a SimpleConsumer.

Usage: transaction.py ENDPOINT TOPIC GROUP
Four transactions, one message each: index 0 committed (after a receive that must find
nothing while it is half), index 1 rolled back, and indexes 2 and 3 left open as if the
producer had crashed: the server checks them, and the checker commits 2 and rolls back 3.
Receives until two messages arrived and both checks were answered (60 s at most), then
once more. Prints one JSON object: {"while_half": n, "received": [index],
"checked": [index], "after": n}.
"""

import json
import sys
import threading
import time

from rocketmq import (
    ClientConfiguration,
    Credentials,
    FilterExpression,
    Message,
    Producer,
    SimpleConsumer,
    TransactionChecker,
    TransactionResolution,
)


class Checker(TransactionChecker):
    def __init__(self):
        self.checked = []
        self.lock = threading.Lock()

    def check(self, message):
        index = int(message.properties.get("index", "-1"))
        with self.lock:
            if index not in self.checked:
                self.checked.append(index)
        if message.properties.get("on_check") == "commit":
            return TransactionResolution.COMMIT
        return TransactionResolution.ROLLBACK


def message(topic, index, on_check=None):
    m = Message()
    m.topic = topic
    m.body = f"transfer {index}".encode()
    m.add_property("index", str(index))
    if on_check:
        m.add_property("on_check", on_check)
    return m


def main():
    endpoint, topic, group = sys.argv[1:4]
    config = ClientConfiguration(endpoint, Credentials())
    checker = Checker()
    producer = Producer(config, (topic,), checker)
    producer.startup()
    consumer = SimpleConsumer(config, group, {topic: FilterExpression("*")}, await_duration=2)
    consumer.startup()
    try:
        committed = producer.begin_transaction()
        producer.send(message(topic, 0), committed)
        while_half = len(consumer.receive(32, 30))
        committed.commit()
        rolled_back = producer.begin_transaction()
        producer.send(message(topic, 1), rolled_back)
        rolled_back.rollback()
        for index, on_check in ((2, "commit"), (3, "rollback")):
            producer.send(message(topic, index, on_check), producer.begin_transaction())
        received = []
        deadline = time.time() + 60
        while (len(received) < 2 or len(checker.checked) < 2) and time.time() < deadline:
            for m in consumer.receive(32, 30):
                received.append(int(m.properties.get("index", "-1")))
                consumer.ack(m)
        after = len(consumer.receive(32, 30))
        print(
            json.dumps(
                {
                    "while_half": while_half,
                    "received": received,
                    "checked": sorted(checker.checked),
                    "after": after,
                }
            ),
            flush=True,
        )
    finally:
        consumer.shutdown()
        producer.shutdown()


if __name__ == "__main__":
    main()
