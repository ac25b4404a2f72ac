"""Plain handlers, one per operationId, resolved by Connexion from the specs."""
