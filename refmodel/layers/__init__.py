"""Layer descriptions: small frozen dataclasses that validate a block (no arithmetic here).

Synaptic layers (Conv2d, Linear) make currents; neuron layers (IF, LIF, DualThreshold,
LoihiLIF) integrate them and spike; pooling layers follow a neuron layer; Flatten reshapes.
"""

from refmodel.layers.base import LayerError
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
from refmodel.layers.synapses import Conv2d, Flatten, Linear

SYNAPSES = (Conv2d, Linear)
NEURONS = (IF, LIF, DualThreshold, LoihiLIF)
POOLS = (WinnerSpikePool, PooledNeuronPool, CountGatePool, OrPool, SumPool, AvgPool)

__all__ = [
    "LayerError", "MAX_CURRENT", "NeuronStep", "PoolStep", "SYNAPSES", "NEURONS", "POOLS",
    "Conv2d", "Linear", "Flatten", "IF", "LIF", "DualThreshold", "LoihiLIF",
    "WinnerSpikePool", "PooledNeuronPool", "CountGatePool", "OrPool", "SumPool", "AvgPool",
]  # fmt: skip
