"""Reading resource files (YAML with positions) and validating them."""
