"""ConsentBridge: keeps consent in step between Didomi and Microsoft Dynamics 365."""

__version__ = "0.1.0"
