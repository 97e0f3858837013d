"""A stand-in Lawtrail service for the launcher's tests: only a gRPC health server."""
