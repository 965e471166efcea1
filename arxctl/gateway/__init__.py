"""The connector gateway: the enforcement point that holds the credentials and decides every agent call."""
