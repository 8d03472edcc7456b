"""Name resolution components: app id -> the address of that app's sidecar."""
