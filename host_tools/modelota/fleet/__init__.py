"""The fleet (docs/FLEET.md): :mod:`.db` (the database: lines, versions,
devices, assignments, reports, windows; migrations; payload bytes),
:mod:`.auth` (device keys and signed requests), :mod:`.guard` (connection
caps, deadlines, rate limits, a bounded log), :mod:`.server` (``modelota
serve``, needs the ``fleet`` extra), :mod:`.client` (the admin client and
the simulated device's pull), :mod:`.export` (the same answers as a static
tree; windows as Edge Impulse files), and the rollouts (:mod:`.rollout`,
:mod:`.rollout_store`, :mod:`.dashboard`)."""
