"""labeler: label text corpora with LLMs first and send the doubtful part to humans."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("labeler")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+src"

__all__ = ["__version__"]
