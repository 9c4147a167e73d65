"""pyserial URL handlers (``sim://``), registered by :mod:`modelota.push`."""
