"""`python -m app` runs the autopilot command."""

from app.cli import main

main()
