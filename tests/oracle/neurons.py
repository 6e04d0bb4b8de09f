"""Twin of the neuron layers, written from docs/neurons.md: Python ints, one neuron at a time.

``step(layer, state, current)`` reads the layer's documented fields only and returns
``(spikes, v_pre, v_post, new_state, overflows)`` without touching ``state``; under
Overflow.ERROR it raises ``NeuronOverflow(index, value)`` for the first offending write.
"""

import numpy as np

from tests.oracle.fixed import OracleOverflow, OracleOverflowAt, cast, shift_right


class NeuronOverflow(OracleOverflowAt):
    """The twin's ERROR mode: the write at ``index`` had the exact value ``value``."""


def channel_value(value, c):
    """A scalar parameter, or the entry of channel c of a per-channel one."""
    return value[c] if isinstance(value, tuple) else value


def leak(v, layer):
    """§3: leak(V) of a LIF / DualThreshold layer (IF has none)."""
    kind = getattr(layer, "leak", "none")
    if kind == "shift":
        step = shift_right(v, layer.leak_shift, layer.leak_rounding)
        if layer.leak_min_step and step == 0 and v != 0:
            step = 1 if v > 0 else -1
        return v - step
    if kind == "mul":
        return shift_right(v * layer.leak_mult, layer.leak_shift, layer.leak_rounding)
    if kind == "linear":
        lam = layer.leak_step
        if v > lam:
            return v - lam
        if v < -lam:
            return v + lam
        return 0
    return v


def _write(x, layer, index, counter):
    """cast(x) into the V register, counting a change; ERROR raises with the exact value."""
    try:
        y = cast(x, layer.vm, layer.overflow)
    except OracleOverflow:
        raise NeuronOverflow(index, x) from None
    counter[0] += y != x
    return y


def step(layer, state, current):
    """One timestep of IF / LIF / DualThreshold (§2), or of LoihiLIF (§5)."""
    if layer.kind == "loihi_lif":
        return loihi_step(layer, state, current)
    shape = current.shape
    n_ch = shape[1]
    dual = layer.kind == "dual_threshold"
    thetas = (layer.theta1, layer.theta2) if dual else (layer.threshold,)
    order = getattr(layer, "order", "leak_first")
    ge = layer.compare == ">="
    refractory = layer.refractory
    spikes = np.zeros((shape[0], len(thetas) * n_ch) + shape[2:], np.uint8)
    v_pre = np.zeros(shape, np.int64)
    v_post = np.zeros(shape, np.int64)
    r_new = np.zeros(shape, np.int64)
    counter = [0]
    for index in np.ndindex(*shape):
        c = index[1]
        v = int(state["v"][index])
        r = int(state["refractory"][index]) if refractory else 0
        if refractory > 0 and r > 0:  # 1. hold
            r_new[index] = r - 1
            v_pre[index] = v_post[index] = v
            continue
        if order == "leak_first":  # 2.
            v = leak(v, layer)
        v = _write(v + int(current[index]), layer, index, counter)  # 3.
        if order == "integrate_first":  # 4.
            v = leak(v, layer)
        if layer.v_min is not None and v < layer.v_min:  # 5.
            v = layer.v_min
        v_pre[index] = v  # 6.
        s = []
        for k, theta in enumerate(thetas):  # 7.
            t = channel_value(theta, c)
            s.append(v >= t if ge else v > t)
            spikes[(index[0], k * n_ch + c) + index[2:]] = s[k]
        # 8. drive
        if not dual or layer.reset_by == "s1":
            d, theta_d = s[0], channel_value(thetas[0], c)
        elif layer.reset_by == "s2":
            d, theta_d = s[1], channel_value(thetas[1], c)
        else:
            fired = [channel_value(thetas[k], c) for k in range(2) if s[k]]
            d = bool(fired)
            theta_d = max(fired) if fired else None
        if d:  # 9.
            if layer.reset == "subtract":
                v = _write(v - theta_d, layer, index, counter)
            elif layer.reset == "zero":
                v = 0
            elif layer.reset == "value":
                v = layer.reset_value
        if refractory > 0:  # 10.
            r_new[index] = refractory if d else 0
        v_post[index] = v  # 11.
    new_state = {"v": v_post}
    if refractory:
        new_state["refractory"] = r_new
    return spikes, v_pre, v_post, new_state, counter[0]


def _trunc0(x, n):
    """x / 2**n rounded toward zero."""
    q = abs(x) // 2**n
    return q if x >= 0 else -q


def loihi_step(layer, state, current):
    """§5, from Lava's equations: u wraps at 24 bits, v saturates at ±(2**23 - 1)."""
    shape = current.shape
    spikes = np.zeros(shape, np.uint8)
    v_pre = np.zeros(shape, np.int64)
    v_post = np.zeros(shape, np.int64)
    u_new = np.zeros(shape, np.int64)
    overflows = 0
    for index in np.ndindex(*shape):
        c = index[1]
        u = _trunc0(int(state["u"][index]) * (4096 - (layer.du + 1)), 12) + int(current[index]) * 2**6
        wrapped = (u + 2**23) % 2**24 - 2**23
        overflows += wrapped != u
        u = wrapped
        bias = channel_value(layer.bias_mant, c) * 2 ** channel_value(layer.bias_exp, c)
        v = _trunc0(int(state["v"][index]) * (4096 - layer.dv), 12) + u + bias
        limit = 2**23 - 1
        clamped = min(max(v, -limit), limit)
        overflows += clamped != v
        v = clamped
        v_pre[index] = v
        s = v > channel_value(layer.vth, c) * 2**6
        spikes[index] = s
        if s:
            v = 0
        v_post[index] = v
        u_new[index] = u
    return spikes, v_pre, v_post, {"u": u_new, "v": v_post}, overflows

