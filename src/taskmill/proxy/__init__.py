"""taskmill's model proxy: agents reach their model only through it, without the key.

- :mod:`.server`: :class:`ModelProxy`, the reverse proxy (one per ``taskmill run``);
- :mod:`.families`: how each API family authenticates, which adapter speaks which;
- :mod:`.usage`: tokens read from the answers (JSON bodies and SSE streams);
- :mod:`.pricing`: prices per model, ``[pricing]`` in the config;
- :mod:`.turn`: the mill's side (route a turn through it, record what it counted).
"""

from .pricing import Price, PriceTable
from .server import PLACEHOLDER_KEY, ModelProxy, ProxyError, TurnRoute
from .usage import Counts, TurnUsage

__all__ = ["PLACEHOLDER_KEY", "Counts", "ModelProxy", "Price", "PriceTable", "ProxyError",
           "TurnRoute", "TurnUsage"]
