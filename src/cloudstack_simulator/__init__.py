"""Apache CloudStack management-server simulator (standard library only).

Serves the CloudStack HTTP API (``/client/api``: signed GET/POST, JSON envelopes, async jobs, errors,
paging) over an in-memory, thread-safe state driven by a scenario file, plus the SSVM-like template
upload endpoint. Required-parameter checks come from ``api_spec.json``, a subset of a real
CloudStack 4.11 ``listApis`` dump (see ``spec.py``). Never imports ``cloudstack_cpi``.

    from cloudstack_simulator import Simulator, FaultConfig
    with Simulator(scenario="advanced") as sim:
        sim.endpoint, sim.api_key, sim.secret_key
"""
from .faults import FaultConfig
from .simulator import Simulator

__all__ = ["FaultConfig", "Simulator"]
