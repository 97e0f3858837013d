"""case-svc's domain: pure Python (no I/O, no protobuf, no frameworks; only `servicekit.errors`)."""
