"""Application operations shared by the HTTP service and the CLI: each function is one thing a
user can do (apply an integration, receive a webhook, replay dead letters …). `web/` and `cli/`
only translate requests and arguments into these calls."""
