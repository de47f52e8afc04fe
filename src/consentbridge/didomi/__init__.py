"""Didomi side: webhook payloads (what Didomi sends us) and the API client (what we send it)."""
