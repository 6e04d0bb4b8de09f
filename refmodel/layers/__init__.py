"""Layer descriptions: small frozen dataclasses that describe and validate a block (no
arithmetic here), each implementing the interface of ``refmodel.layers.base.Layer``.

Synaptic layers (Conv2d, Linear) make currents; Flatten reshapes; neuron layers (IF, LIF,
DualThreshold, LoihiLIF) integrate currents and spike; pooling layers read a neuron layer;
merge layers (Add, Concat) combine several layers' outputs.  ``KINDS`` maps every spec kind to
its class, in the order the modules below define them.
"""

from refmodel.layers.base import NETWORK_INPUT, ROLES, SPIKE, Layer, LayerError
from refmodel.layers.synapses import Conv2d, Linear
from refmodel.layers.shape import Flatten
from refmodel.layers.neurons import IF, LIF, MAX_CURRENT, DualThreshold, LoihiLIF, NeuronStep
from refmodel.layers.pooling import (
    AvgPool,
    CountGatePool,
    OrPool,
    PooledNeuronPool,
    PoolStep,
    SumPool,
    WinnerSpikePool,
)
from refmodel.layers.merge import Add, Concat

#: Every layer class by its spec kind.
KINDS = dict(Layer.registry)


def kinds_of(role: str) -> tuple:
    """The spec kinds of ``role``, in ``KINDS`` order."""
    return tuple(kind for kind, cls in KINDS.items() if cls.role == role)


__all__ = [
    "Layer", "LayerError", "KINDS", "kinds_of", "ROLES", "SPIKE", "NETWORK_INPUT", "MAX_CURRENT", "NeuronStep",
    "PoolStep", "Conv2d", "Linear", "Flatten", "IF", "LIF", "DualThreshold", "LoihiLIF",
    "WinnerSpikePool", "PooledNeuronPool", "CountGatePool", "OrPool", "SumPool", "AvgPool", "Add", "Concat",
]  # fmt: skip
