"""Risk features kept in the database and offline: velocity counters, links between subjects
(:mod:`.velocity`) and the IP→region lookup (:mod:`.regions`)."""
