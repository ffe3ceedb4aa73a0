"""Local development services on 127.0.0.1 (`saleslake services start|stop|status`).

Each service lives in its own module (``saleslake.devservices.kafka``, ...) so that importing
this package stays cheap and has no side effects.
"""
