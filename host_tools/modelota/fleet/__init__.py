"""The fleet (docs/FLEET.md): :mod:`.db` (the database: lines, versions,
devices, assignments, reports), :mod:`.server` (``modelota serve``, needs the
``fleet`` extra), :mod:`.client` (the admin client and the simulated device's
pull), :mod:`.export` (the same answers as a static tree)."""
