"""compliance-svc: compliance findings from every service's events (faust-streaming), their lifecycle."""
