"""emotional-engine: stories with emotional intelligence and cultural sensitivity."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("emotional-engine")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
