"""See the package README / docs."""
