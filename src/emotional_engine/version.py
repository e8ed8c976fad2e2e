"""The engine's version, from the installed distribution; a basic module (imports nothing from the
package) so that any layer can stamp it (provenance, cache keys, the API) without importing the
package root, which stands on top of the layers."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("emotional-engine")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
