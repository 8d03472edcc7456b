"""Security: the API token check (app tokens, access control and mTLS come later)."""
