"""The Faust side of a worker: the app, the execute and project agents, and the signal stage's
engine hosted in it."""
