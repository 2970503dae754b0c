from tests.journeys.brand import _no_quiet_hours, brand  # noqa: F401
