"""envgrid devices package."""
