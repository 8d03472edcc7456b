"""Pub/sub components: brokers the pub/sub block publishes to and subscribes from."""
