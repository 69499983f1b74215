"""Sends messages to a georouter region's RocketMQ 5 access point with the official RocketMQ 5
Python SDK (rocketmq-python-client), unchanged: sync and async sends of normal messages with
tags, keys and user properties, then a send to a topic that does not exist.

Usage: producer.py ENDPOINT TOPIC COUNT
With GEOROUTER_TLS=1 it connects over TLS (the CA comes from GRPC_DEFAULT_SSL_ROOTS_FILE_PATH);
with ROCKETMQ_ACCESS_KEY and ROCKETMQ_SECRET_KEY it signs its requests.
Prints one JSON object: {"sent": [{"index", "message_id", "offset"}], "unknown_topic": error}.
"""

import json
import os
import sys

from rocketmq import ClientConfiguration, Credentials, Message, Producer


def message(topic, index):
    m = Message()
    m.topic = topic
    m.body = f"message {index}".encode()
    m.tag = "TagA" if index % 2 == 0 else "TagB"
    m.keys = f"key-{index}"
    m.add_property("index", str(index))
    return m


def main():
    endpoint, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    credentials = Credentials(
        os.environ.get("ROCKETMQ_ACCESS_KEY", ""), os.environ.get("ROCKETMQ_SECRET_KEY", "")
    )
    tls = os.environ.get("GEOROUTER_TLS") == "1"
    producer = Producer(ClientConfiguration(endpoint, credentials), (topic,), tls_enable=tls)
    producer.startup()
    try:
        sent, pending = [], []
        for index in range(count):
            if index % 2 == 0:
                receipt = producer.send(message(topic, index))
                sent.append((index, receipt))
            else:
                pending.append((index, producer.send_async(message(topic, index))))
        for index, future in pending:
            sent.append((index, future.result(timeout=30)))
        try:
            producer.send(message("no-such-topic", 0))
            unknown_topic = None
        except Exception as error:  # the SDK raises its own exception types
            unknown_topic = str(error)
        print(
            json.dumps(
                {
                    "sent": [
                        {"index": i, "message_id": r.message_id, "offset": r.offset}
                        for i, r in sent
                    ],
                    "unknown_topic": unknown_topic,
                }
            ),
            flush=True,
        )
    finally:
        producer.shutdown()


if __name__ == "__main__":
    main()
