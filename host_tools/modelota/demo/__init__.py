"""``modelota demo``: the digits classifier (:mod:`.digits`, needs the ``demo``
extra), the fleet demo (:mod:`.fleet`) and the board-level demo (:mod:`.local`)."""
