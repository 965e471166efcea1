"""One module per verb group: parse arguments, call core code, render. No logic here."""
