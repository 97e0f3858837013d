"""Events on Kafka: CloudEvents envelope, idempotent producer, outbox relay, consumer with inbox and DLQ."""
