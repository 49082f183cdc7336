"""The vector type SKR passes around: a float32 numpy array."""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import numpy.typing as npt

Vector: TypeAlias = npt.NDArray[np.float32]
"""One embedding (shape ``(dimensions,)``) or a batch (shape ``(n, dimensions)``)."""
