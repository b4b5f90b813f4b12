"""bentos package."""
