"""Several envgrid hosts as members of one cluster: leases in PostgreSQL (docs/deploy.md)."""
