"""The gRPC server of a service: bootstrap, health, reflection, auth, error table and metrics.

Named ``servicekit.grpc``; inside this package ``import grpc`` still means grpcio, because imports are
absolute.
"""

from servicekit.grpc.interceptors import RolePolicy
from servicekit.grpc.server import ANY_AUTHENTICATED, GrpcServer, ServiceBinding, check_role_policy

__all__ = ["ANY_AUTHENTICATED", "GrpcServer", "RolePolicy", "ServiceBinding", "check_role_policy"]
