"""HTTP middleware components (``middleware.http.*``) for the API and app pipelines."""
