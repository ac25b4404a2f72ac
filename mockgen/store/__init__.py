"""Pure state stores of the mocked services (no HTTP)."""
