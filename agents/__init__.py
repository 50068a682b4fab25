"""Stream agents: aggregate, decide, execute."""
