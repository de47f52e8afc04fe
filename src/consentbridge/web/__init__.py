"""The HTTP service: ``app.create_app`` builds it; ``routes/`` holds one module per surface
(token endpoint, webhooks, admin API, console, metrics, health), ``errors`` maps domain errors
to answers, ``body`` reads request bodies within bounds."""
