"""The pure functional core: decode, window fold, health, facts, rules, policy, decide, backoff,
breaker, execution state, outcomes, ledger entry builders, chain, projection fold, dead-letter
selection, replay. No Faust, Kafka, HTTP, database, clock or randomness: it imports only topics
and the standard library (and pydantic/orjson for the models), and is replayed offline."""
