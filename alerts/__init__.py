"""envgrid alerts package."""
