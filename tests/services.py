"""Where the test suite finds its real backends.

``scripts/services.sh`` starts them (installing from Debian's packages when
missing); these constants are the addresses it brings up. They can be
overridden through the environment to point the suite at other servers.
"""

from __future__ import annotations

import os

REDIS_HOST = os.environ.get("DAPRLITE_TEST_REDIS", "127.0.0.1:6379")
POSTGRES_DSN = os.environ.get("DAPRLITE_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")
MQTT_URL = os.environ.get("DAPRLITE_TEST_MQTT", "tcp://127.0.0.1:1883")
RABBITMQ_URL = os.environ.get("DAPRLITE_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("DAPRLITE_TEST_NATS", "nats://127.0.0.1:4222")
