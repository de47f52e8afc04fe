"""Dataverse Web API emulator: stands in for Microsoft and imports nothing from the product."""
