"""Hypothesis strategies for rounding and overflow modes in every spelling the API accepts
(docs/arithmetic.md §2, §3): the enum member, its name, and its name in lower case."""

from hypothesis import strategies as st

from refmodel.fixed import Overflow, Rounding


def spellings(enum):
    """A member of ``enum`` as the member itself, its NAME or its name."""
    members = list(enum)
    return st.sampled_from(members) | st.sampled_from([m.name for m in members]).flatmap(
        lambda name: st.sampled_from([name, name.lower()])
    )


ROUNDINGS = spellings(Rounding)
OVERFLOWS = spellings(Overflow)
