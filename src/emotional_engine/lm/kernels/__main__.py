"""`python -m emotional_engine.lm.kernels`: build the kernels now (`make install` does)."""

import logging
import sys

from emotional_engine.lm.kernels import ops

logging.basicConfig(level=logging.INFO)
ee = ops()
if ee is None:
    sys.exit("the kernels could not be built; the runtime will use its PyTorch path")
print(f"kernels built and loaded; on this CPU they take the {ee.path()} path")
