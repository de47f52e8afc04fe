"""didomi package."""
