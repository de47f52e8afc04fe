"""Emulators of Microsoft Entra ID, the Dataverse Web API and the Didomi API.

The sandbox stands in for the real services in tests, benchmarks and demos. It imports nothing
from the rest of ConsentBridge: it must behave like Microsoft and Didomi document their services,
not like our client happens to expect.
"""
