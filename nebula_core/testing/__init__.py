"""A local emulator of NebulaBlock's embeddings service, for tests, notebooks and CI.

    from nebula_core.testing import NebulaEmulator, Fault

    with NebulaEmulator() as emu:          # real HTTP on 127.0.0.1, a free port
        emu.enqueue(Fault.status(503))     # the next embeddings request fails once
        ...                                # point a client at emu.base_url / emu.api_key

Off by default, each switched on by a keyword: a GPU's compute model (`capacity`,
`seconds_per_token`), per-key rate limits (`requests_per_minute`, `tokens_per_minute`),
per-input token limits answered TEI/vLLM-style or by truncation (`long_input`), a proxy's body
limit (`max_body_bytes`), base64 and strict bodies (`honour_encoding_format`, `extra_fields`),
keep-alive idle closes (`idle_timeout`) and raw vectors (`vectors="raw"`); see docs/emulator.md.

From the shell: `python -m nebula_core.testing --port 8765`. In pytest: the `nebula_emulator`
and `nebula_env` fixtures (installed with this package).
"""

from nebula_core.testing._emulator import TRANSIENT_FAULTS, NebulaEmulator
from nebula_core.testing._faults import CORRUPTIONS, PROXY_FAULTS, Corruption, Fault
from nebula_core.testing._recorder import RecordedRequest
from nebula_core.testing._stats import EmulatorStats

__all__ = [
    "CORRUPTIONS",
    "PROXY_FAULTS",
    "TRANSIENT_FAULTS",
    "Corruption",
    "EmulatorStats",
    "Fault",
    "NebulaEmulator",
    "RecordedRequest",
]
