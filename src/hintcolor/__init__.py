"""hintcolor: an experiment framework for hint-based image colorization."""

__version__ = "0.1.0"
