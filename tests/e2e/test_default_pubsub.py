"""DESIGN.md D3: after `daprlite init`, two separate `daprlite run` processes exchange
messages through the embedded default broker, with nothing else installed."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from tests.integration.harness import SidecarProcess, free_port, wait_for
from tests.integration.http import call

APP = Path(__file__).resolve().parents[1] / "integration" / "apps" / "pubsub_http_app.py"


def test_separate_sidecars_exchange_messages_through_the_default_broker(tmp_path: Path) -> None:
    home = tmp_path / "home"
    subprocess.run(
        [sys.executable, "-m", "daprlite", "init"],
        env={"DAPRLITE_HOME": str(home), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        timeout=30,
    )
    defaults = home / "components"
    record = tmp_path / "received.jsonl"
    port = free_port()
    subscription = [{"pubsubname": "pubsub", "topic": "greetings", "route": "/greetings"}]
    subscriber = SidecarProcess(
        [defaults],
        app_id="listener",
        home=home,
        extra_args=["--app-port", str(port)],
        command=[sys.executable, str(APP)],
        env={
            "APP_PORT": str(port),
            "RECORD_FILE": str(record),
            "SUBSCRIPTIONS": json.dumps(subscription),
        },
    )
    publisher = SidecarProcess([defaults], app_id="talker", home=home)
    try:
        subscriber.wait_ready()
        publisher.wait_ready()
        wait_for(lambda: "subscribed to pubsub/greetings" in subscriber.output, 20, "subscribed")
        marker = uuid.uuid4().hex
        reply = call(
            "POST",
            f"{publisher.http}/v1.0/publish/pubsub/greetings",
            data=json.dumps({"hello": marker}).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert reply.status == 204, reply.body
        wait_for(lambda: record.exists() and marker in record.read_text(), 20, "the greeting")
        event = json.loads(record.read_text().splitlines()[0])["event"]
        assert event["data"] == {"hello": marker} and event["source"] == "talker"
    finally:
        publisher.stop()
        subscriber.stop()
    assert (home / "data" / "pubsub.db").exists()
