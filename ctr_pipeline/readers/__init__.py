"""Input readers: a pure parsing core (:mod:`.core`) and its Spark adapter (:mod:`.spark`)."""
