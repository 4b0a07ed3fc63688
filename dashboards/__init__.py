"""envgrid dashboards package."""
