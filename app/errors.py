"""The one root error of Autopilot; infrastructure errors are translated with `raise ... from`."""


class AutopilotError(Exception):
    """Base of every error Autopilot raises on purpose; the message tells an operator what to do."""


class ConfigurationError(AutopilotError):
    """A setting is missing or invalid."""


class BrokerUnavailableError(AutopilotError):
    """No Kafka broker could be found or started."""
