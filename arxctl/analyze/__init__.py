"""Static analysis of agent code and Dockerfiles: derived connector graph, hygiene findings, control evidence."""
