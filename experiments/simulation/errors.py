"""The simulation layer's own error type (the entry point prints it as one ``error:`` line, exit 2)."""


class SimulationError(ValueError):
    """A pool, strategy or setting the simulation cannot replay; the message is one line saying why."""
