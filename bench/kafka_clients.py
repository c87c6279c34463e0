"""Kafka client throughput against a local Tansu broker: confluent-kafka vs kafka-python.

Run: ``python -m bench.kafka_clients [N]``. Starts Tansu (bench/services.py),
produces N messages (default 20,000, ~430 bytes) to a 2-partition topic with
each client and consumes them back, printing messages per second. kafka-python
is measured only if installed (``pip install kafka-python``); the pipeline uses
confluent-kafka, chosen on these figures.
"""

from __future__ import annotations

import json
import sys
import time

from bench.services import tansu

PAYLOAD = json.dumps({"id": "x" * 10, "body": "y" * 400}).encode()


def bench_confluent(bootstrap: str, n: int) -> tuple[float, float]:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("ck", 2, 1)])["ck"].result(timeout=15)
    t = time.monotonic()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(n):
        producer.produce("ck", PAYLOAD, partition=i % 2)
        if i % 1000 == 0:
            producer.poll(0)
    producer.flush()
    produce = n / (time.monotonic() - t)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition("ck", 0, 0), TopicPartition("ck", 1, 0)])
    t, got = time.monotonic(), 0
    while got < n:
        got += len(consumer.consume(1000, 1.0))
    consume = n / (time.monotonic() - t)
    consumer.close()
    return produce, consume


def bench_kafka_python(bootstrap: str, n: int) -> tuple[float, float]:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic("kp", 2, 1)])
    admin.close()
    t = time.monotonic()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    for i in range(n):
        producer.send("kp", PAYLOAD, partition=i % 2)
    producer.flush()
    producer.close()
    produce = n / (time.monotonic() - t)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    consumer.assign([TopicPartition("kp", 0), TopicPartition("kp", 1)])
    consumer.seek_to_beginning()
    t, got = time.monotonic(), 0
    while got < n:
        got += sum(len(r) for r in consumer.poll(timeout_ms=500).values())
    consume = n / (time.monotonic() - t)
    consumer.close()
    return produce, consume


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    with tansu() as bootstrap:
        for name, bench in (("confluent-kafka", bench_confluent),
                            ("kafka-python", bench_kafka_python)):
            try:
                produce, consume = bench(bootstrap, n)
            except ImportError:
                print(f"{name:16s} not installed, skipped")
                continue
            print(f"{name:16s} produce {produce:>9,.0f} msg/s   consume {consume:>9,.0f} msg/s")


if __name__ == "__main__":
    main()
