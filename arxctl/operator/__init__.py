"""The Kubernetes operator: Kopf handlers (thin) over pure reconcile functions (`reconcile.py`)."""
