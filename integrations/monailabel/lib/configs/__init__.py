"""Task configurations."""
