"""Tries to send one message to a georouter region's RocketMQ access point with the official
RocketMQ 5 Python SDK and the given credentials, and reports how it ended.

Usage: refused.py ENDPOINT NAMESPACE TOPIC ACCESS_KEY SECRET (NAMESPACE may be empty)
Prints one JSON object: {"sent": true|false, "error": the SDK's error or null}.
"""

import json
import sys

from rocketmq import ClientConfiguration, Credentials, Message, Producer


def main():
    endpoint, namespace, topic, access_key, secret = sys.argv[1:6]
    configuration = ClientConfiguration(endpoint, Credentials(access_key, secret), namespace)
    producer = Producer(configuration, (topic,))
    result = {"sent": False, "error": None}
    try:
        producer.startup()
        message = Message()
        message.topic = topic
        message.body = b"x"
        producer.send(message)
        result["sent"] = True
    except Exception as error:  # the SDK raises its own exception types
        result["error"] = str(error)
    finally:
        try:
            producer.shutdown()
        except Exception:
            pass
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
