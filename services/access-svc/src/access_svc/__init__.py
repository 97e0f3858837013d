"""access-svc: access requests and grants (R16), the audit ledger (R4, R23-3)."""
