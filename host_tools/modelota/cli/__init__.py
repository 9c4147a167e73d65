"""The ``modelota`` command line: :mod:`.app` builds the parser; one module
per command group (:mod:`.core`, :mod:`.tflite`, :mod:`.edgeimpulse`,
:mod:`.link`, :mod:`.fleet`). The library never imports from here."""

from .app import main

__all__ = ["main"]
