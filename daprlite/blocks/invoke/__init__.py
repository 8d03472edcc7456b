"""The service-invocation building block (caller side and callee side)."""
