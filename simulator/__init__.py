"""The simulator: the far side of every channel (a Telnyx-like fax API, providers' FHIR servers,
external review agencies), speaking the same wire formats as the real ones, on a virtual clock;
and the driver that runs our real pipeline against it (``goodfaith demo`` / ``simulate``).

- ``app``: the far-side registry (``FAR_SIDES``) and :class:`~simulator.app.Simulator`;
- ``base``: the shared context and the ``FarSide`` interface; ``events``: virtual time;
- ``telnyx``, ``cdex``, ``agency``: one far side per vendor;
- ``providers``, ``documents``, ``letters``: provider behaviour, what they send, how they read;
- ``scenario``, ``demo``, ``driver``: what a simulation runs and how; ``serving``: threads.

Nothing in worker/, connectors/, storage/ or api/ imports this package, except the CLI commands
that run it. Importing it starts nothing.
"""
