"""Connector catalog, risk formula, policy compilation and the decision engine."""
