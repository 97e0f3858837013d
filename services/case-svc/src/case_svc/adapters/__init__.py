"""Adapters: MongoDB repository, document content store, protobuf and event mapping."""
