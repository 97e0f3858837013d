"""Use cases of case-svc: one async handler per command."""
