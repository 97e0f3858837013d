"""retention-svc: retention periods, long-term holds, offline copies (R11b, R12, R13)."""
