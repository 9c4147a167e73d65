"""The serial update link, host side (docs/PROTOCOL.md): :mod:`.push` sends a
payload to a board, :mod:`.ports` opens any pyserial URL (``sim://`` too),
:mod:`.linksim` puts a simulated line (baud, latency, bit errors) between two
sockets."""
