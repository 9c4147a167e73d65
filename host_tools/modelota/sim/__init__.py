"""Simulation: the real C++ core through cffi (:mod:`.native`), simulated NOR
flash (:mod:`.flash`), simulated devices (:mod:`.device`), a simulated board
speaking the serial protocol (:mod:`.board`), QEMU boards running the real
firmware (:mod:`.emulated`), the ``sim://`` serial URLs (:mod:`.handlers`),
power-cut sweeps (:mod:`.sweep`) and a fault-injecting TCP proxy
(:mod:`.faultproxy`)."""
