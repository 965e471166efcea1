"""arxctl: govern AI agents the way a company governs employees."""

__version__ = "0.1.0"
API_VERSION = "arx.dev/v1alpha1"
