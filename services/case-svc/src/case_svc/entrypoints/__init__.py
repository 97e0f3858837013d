"""Entry points: the gRPC servicer and the consumer of media events."""
