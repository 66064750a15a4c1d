"""metaviz: explore how meta-learned few-shot models adapt and why they decide what they decide."""
__version__ = "0.1.0"
