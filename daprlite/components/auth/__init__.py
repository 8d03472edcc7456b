"""Auth components: ``auth.jwt`` (token validation) and ``auth.sessions``."""
