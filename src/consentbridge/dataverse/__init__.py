"""dataverse package."""
