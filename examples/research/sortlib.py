"""The code under research: a sort. Experiments change this file only (research.toml)."""


def sort(items, less):
    """Return ``items`` sorted by ``less(a, b)`` (a comparison: what the metric counts)."""
    out = list(items)
    for i in range(1, len(out)):
        j = i
        while j > 0 and less(out[j], out[j - 1]):
            out[j], out[j - 1] = out[j - 1], out[j]
            j -= 1
    return out
