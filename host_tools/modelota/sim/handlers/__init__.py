"""pyserial URL handlers: ``sim://`` (:mod:`.protocol_sim`), registered by name in
:func:`modelota.link.ports.register_handlers`."""
