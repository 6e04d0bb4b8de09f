"""Pure-Python twins of the input encoders, written from docs/encoding.md with plain ints."""

M32 = 0xFFFFFFFF


def mix32(v):
    v &= M32
    v ^= v >> 16
    v = (v * 0x7FEB352D) & M32
    v ^= v >> 15
    v = (v * 0x846CA68B) & M32
    v ^= v >> 16
    return v


def seed_state(seed, p):
    s = mix32(seed + 0x9E3779B9 * (p + 1))
    return s if s else 0x9E3779B9


def xorshift32(s):
    s ^= (s << 13) & M32
    s ^= s >> 17
    s ^= (s << 5) & M32
    return s


def rate(pixels, timesteps, full_scale):
    """Spike trains [t][p] of the integrate-and-fire encoder over a flat list of pixels."""
    acc = [0] * len(pixels)
    out = []
    for _ in range(timesteps):
        row = []
        for p, x in enumerate(pixels):
            acc[p] += x
            spike = acc[p] >= full_scale
            if spike:
                acc[p] -= full_scale
            row.append(int(spike))
        out.append(row)
    return out


def random(pixels, timesteps, seed, k):
    """Spike trains [t][p] of the xorshift32 encoder, full_scale = 2**k."""
    state = [seed_state(seed, p) for p in range(len(pixels))]
    out = []
    for _ in range(timesteps):
        row = []
        for p, x in enumerate(pixels):
            state[p] = xorshift32(state[p])
            row.append(int((state[p] >> (32 - k)) < x))
        out.append(row)
    return out
