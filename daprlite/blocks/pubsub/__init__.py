"""The pub/sub building block: envelopes, scopes, publishing and delivery."""
