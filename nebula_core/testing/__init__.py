"""A local emulator of NebulaBlock's embeddings service, for tests, notebooks and CI.

    from nebula_core.testing import NebulaEmulator, Fault

    with NebulaEmulator() as emu:          # real HTTP on 127.0.0.1, a free port
        emu.enqueue(Fault.status(503))     # the next embeddings request fails once
        ...                                # point a client at emu.base_url / emu.api_key

From the shell: `python -m nebula_core.testing --port 8765`. In pytest: the `nebula_emulator`
and `nebula_env` fixtures (installed with this package).
"""

from nebula_core.testing._emulator import TRANSIENT_FAULTS, NebulaEmulator, RecordedRequest
from nebula_core.testing._faults import CORRUPTIONS, Corruption, Fault

__all__ = [
    "CORRUPTIONS",
    "TRANSIENT_FAULTS",
    "Corruption",
    "Fault",
    "NebulaEmulator",
    "RecordedRequest",
]
