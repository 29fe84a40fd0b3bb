"""What happens after an incident is opened or changes: live hints, and responder dispatch.

Called after the database commit (never before: a job must find what it is about).
"""

from __future__ import annotations

from dispatch.services import Services


def incident_opened(services: Services, incident_id: int) -> None:
    """A new incident: tell the board, and start finding responders."""
    services.live.emit("incident_opened", {"incident_id": incident_id})
