"""Hypothesis strategies for rounding and overflow modes in every spelling the API accepts
(docs/arithmetic.md §2, §3): the enum member, or its name in upper, lower or mixed case."""

from hypothesis import strategies as st

from refmodel.fixed import Overflow, Rounding


def spellings(enum):
    """A member of ``enum`` as the member itself, or as "RND_CONV", "rnd_conv" or "Rnd_Conv"."""
    members = list(enum)
    return st.sampled_from(members) | st.sampled_from([m.name for m in members]).flatmap(
        lambda name: st.sampled_from([name, name.lower(), name.title()])
    )


ROUNDINGS = spellings(Rounding)
OVERFLOWS = spellings(Overflow)
