"""Alerts to a Slack or Teams incoming webhook (``CONSENTBRIDGE_ALERT_WEBHOOK_URL``).

``messages`` builds the texts (pure), ``sender`` delivers them in the background with bounded
retries, ``monitor`` checks each integration's conditions now and then and raises or clears
them in the store, so that of several workers exactly one sends each alert and its
"resolved" message.
"""
