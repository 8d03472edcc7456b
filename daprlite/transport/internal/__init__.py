"""The sidecar-to-sidecar transport (HTTP/1.1, chosen by measurement; see bench/RESULTS.md)."""
