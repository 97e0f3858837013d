"""Serve grpc.health.v1 (SERVING) on LAWTRAIL_GRPC_ADDRESS until SIGTERM, like a real service.

FAKE_SVC_FAIL=1 makes it exit at once with a message, as a service with a broken configuration does.
"""

import os
import signal
import sys
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


def main() -> int:
    if os.environ.get("FAKE_SVC_FAIL"):
        print("fake-svc: configuration error: FAKE_SVC_FAIL is set", flush=True)
        return 3
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(os.environ["LAWTRAIL_GRPC_ADDRESS"])
    server.start()
    print(f"fake-svc: serving on {os.environ['LAWTRAIL_GRPC_ADDRESS']}", flush=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    stopping.wait()
    server.stop(grace=1).wait()
    print("fake-svc: stopped", flush=True)
    return 0


sys.exit(main())
