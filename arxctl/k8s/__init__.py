"""Kubernetes artefacts derived from the resource schemas (CustomResourceDefinitions)."""
