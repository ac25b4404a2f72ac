"""mockgen."""
