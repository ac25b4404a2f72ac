"""The mock servers' ASGI layers: exchange recording, dispatch to handlers, service error dialects."""
