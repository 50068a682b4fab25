"""The Faust app, settings, CLI commands and web views."""
