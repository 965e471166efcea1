"""State backends: embedded SQLite (default); Kubernetes custom resources (operator)."""
